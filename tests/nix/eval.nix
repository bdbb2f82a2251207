# Evaluates one scenario (tests/nix/scenarios/<name>.nix) of the NixOS module
# with nixpkgs' lib only. Run by tests/nix_eval.rs:
#
#   nix-instantiate --eval --strict --json tests/nix/eval.nix \
#     --arg nixpkgsLib "$NIXPKGS_LIB" --argstr scenario one-app -A result
#
# `meta` never forces the configuration (a scenario may expect the evaluation
# itself to fail); `result` does.
{ nixpkgsLib, scenario }:

let
  lib = import nixpkgsLib;
  s = import (./scenarios + "/${scenario}.nix") { inherit lib; };
  evaluated = lib.evalModules {
    modules = [
      (import ./stubs.nix { withSops = s.sops or true; })
      ../../modules
      s.config
    ];
  };
  config = evaluated.config;
  failed = map (a: a.message) (lib.filter (a: !a.assertion) config.assertions);
in
{
  meta = {
    description = s.description;
    evalError = s.evalError or null;
    expectedAssertions = s.assertions or [ ];
    noSpec = s.noSpec or false;
  };
  result = {
    failedAssertions = failed;
    spec =
      if failed == [ ] && config.services.nixarr-units.enable then config.services.nixarr-units.spec else null;
    checks = if failed == [ ] then (s.checks or (_: { })) config else { };
  };
}
