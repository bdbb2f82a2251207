# The stack of the NixOS VM test (nix/vm-test.nix), shared with its run on
# nspawn (tests/e2e/vm_scenario.rs, through tests/nix/e2e/vm.nix) so that
# both run the same configuration of the module: sonarr, radarr (depends on
# sonarr) and a second Sonarr instance sonarr-4k on port 8990, all from the
# fake *arr image. `fake port` gives the image options of an app that
# listens on `port` (tests/vm/fake-arr/).
{ fake }:
{
  sonarr = {
    enable = true;
  }
  // fake 8989;
  radarr = {
    enable = true;
    dependsOn = [ "sonarr" ];
  }
  // fake 7878;
  instances.sonarr-4k = {
    app = "sonarr";
    port = 8990;
  }
  // fake 8989;
}
