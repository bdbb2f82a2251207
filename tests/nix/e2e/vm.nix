# The NixOS VM test's configuration (tests/vm/stack.nix, as nix/vm-test.nix
# uses it), for its run on nspawn (tests/e2e/vm_scenario.rs): the fake *arr
# image is the machine's, loaded from `imageFile` as the VM loads its
# dockerTools image.
{
  lib,
  imageFile,
  ...
}:
{
  description = "the NixOS VM test's stack (tests/vm/stack.nix)";
  config.services.nixarr-units = import ../../vm/stack.nix {
    fake = port: {
      image = "localhost/fake-arr:test";
      inherit imageFile;
      environment.LISTEN_PORT = toString port;
    };
  };
}
