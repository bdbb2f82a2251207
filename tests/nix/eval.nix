# Evaluates one scenario (tests/nix/scenarios/<name>.nix) of the NixOS module
# with nixpkgs' lib only. Run by tests/nix_eval.rs:
#
#   nix-instantiate --eval --strict --json tests/nix/eval.nix \
#     --arg nixpkgsLib "$NIXPKGS_LIB" --argstr scenario one-app -A result
#
# `meta` never forces the configuration (a scenario may expect the evaluation
# itself to fail); `result` does.
#
# `scenarioFile` (a path) evaluates a scenario written elsewhere, such as one
# around the block `nixarr-units init` wrote.
{
  nixpkgsLib,
  scenario ? null,
  scenarioFile ? null,
}:

let
  lib = import nixpkgsLib;
  # The flake's outputs, with stand-ins for nixpkgs (for scenarios that
  # import its modules: `{ lib, flake }:`).
  flake =
    let
      outputs = (import ../../flake.nix).outputs {
        self = outputs;
        nixpkgs = {
          inherit lib;
          outPath = "/nixpkgs";
          legacyPackages = lib.genAttrs [
            "x86_64-linux"
            "aarch64-linux"
          ] (_: import ./stub-pkgs.nix { inherit lib; });
        };
      };
    in
    outputs;
  file = if scenarioFile != null then scenarioFile else ./scenarios + "/${scenario}.nix";
  s = import file (
    { inherit lib; } // lib.optionalAttrs (lib.functionArgs (import file) ? flake) { inherit flake; }
  );
  evaluated = lib.evalModules {
    modules = [
      (import ./stubs.nix {
        withSops = s.sops or true;
        pkgs = s.pkgs or (p: p);
      })
    ]
    # The entry for users without flakes, unless the scenario brings the
    # flake's modules instead.
    ++ lib.optional (s.nonFlakeEntry or true) ../../modules
    ++ [ s.config ];
  };
  config = evaluated.config;
  failed = map (a: a.message) (lib.filter (a: !a.assertion) config.assertions);
in
{
  meta = {
    description = s.description;
    evalError = s.evalError or null;
    expectedAssertions = s.assertions or [ ];
    expectedWarnings = s.warnings or [ ];
    noSpec = s.noSpec or false;
  };
  result = {
    failedAssertions = failed;
    warnings = if failed == [ ] then config.warnings else [ ];
    spec =
      if failed == [ ] && config.services.nixarr-units.enable then config.services.nixarr-units.spec else null;
    checks = if failed == [ ] then (s.checks or (_: { })) config else { };
    tmpfilesRules = if failed == [ ] then config.systemd.tmpfiles.rules else [ ];
    # The API's polkit rule (compared with `render`'s file).
    polkitRules = if failed == [ ] then config.security.polkit.extraConfig else "";
    # What sops-nix's manifest reads of every secret: a secret without a
    # sopsFile (and no sops.defaultSopsFile) fails here, as it would there.
    sopsFiles =
      if failed == [ ] && (s.sops or true) then lib.mapAttrs (_: v: toString v.sopsFile) config.sops.secrets else { };
  };
}
