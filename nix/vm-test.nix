# NixOS VM test: the module with two catalog apps and a second instance
# (tests/vm/stack.nix), backed by a tiny image built with dockerTools (no
# registry, no network).
# The Nix glue stays here; the scenario itself is tests/vm/scenario.py,
# written against the test driver's machine API only, so that a stand-in
# driver (nspawn, see /work/shared/REAL-SYSTEMD.md) can run the same file.
{ pkgs, self }:

let
  # Stands in for an *arr image: busybox httpd answering /ping with the
  # body the catalog's probe expects, on $LISTEN_PORT, and a `curl` shim so
  # the catalog's in-container health command (`curl -fsS -o /dev/null URL`)
  # works with busybox's wget. Its files live in tests/vm/fake-arr/, shared
  # with the nspawn run of this scenario (tests/e2e/vm_scenario.rs), which
  # imports the same files into podman. The entrypoint is a shell that traps
  # SIGTERM: busybox httpd as PID 1 ignores it, and every stop would wait
  # the whole stop timeout.
  fakeArrRoot = pkgs.runCommand "fake-arr-root" { } ''
    install -D -m 0755 ${../tests/vm/fake-arr/run} "$out/bin/fake-arr"
    install -D -m 0755 ${../tests/vm/fake-arr/curl} "$out/bin/curl"
    install -D -m 0644 ${../tests/vm/fake-arr/www/ping} "$out/www/ping"
  '';
  fakeArr = pkgs.dockerTools.buildImage {
    name = "localhost/fake-arr";
    tag = "test";
    copyToRoot = pkgs.buildEnv {
      name = "fake-arr-env";
      paths = [
        pkgs.busybox
        fakeArrRoot
      ];
    };
    config.Cmd = [ "/bin/fake-arr" ];
  };
  fake = port: {
    image = "localhost/fake-arr:test";
    imageFile = fakeArr;
    environment.LISTEN_PORT = toString port;
  };
in
pkgs.testers.runNixOSTest {
  name = "nixarr-units";

  nodes.machine =
    { pkgs, ... }:
    {
      imports = [ self.nixosModules.default ];
      virtualisation.memorySize = 2048;
      virtualisation.diskSize = 4096;
      environment.systemPackages = [ pkgs.curl ];

      services.nixarr-units = {
        enable = true;
      }
      // import ../tests/vm/stack.nix { inherit fake; };
    };

  testScript = builtins.readFile ../tests/vm/scenario.py;
}
