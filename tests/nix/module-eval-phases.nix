# The install phase of the flake's module-eval check (nix/module-eval.nix),
# as stdenv would run it: nix/package.nix's attributes with the check's
# override applied, evaluated with nixpkgs' lib and stand-ins for
# rustPlatform and pkgs. tests/nix_eval.rs runs the result in bash.
{ nixpkgsLib }:

let
  lib = import nixpkgsLib;
  # buildRustPackage's attributes, with overrideAttrs as mkDerivation has it.
  mkDrv =
    attrs:
    attrs
    // {
      overrideAttrs = f: mkDrv (attrs // f attrs);
    };
  package = import ../../nix/package.nix {
    inherit lib;
    rustPlatform.buildRustPackage = mkDrv;
    installShellFiles = "installShellFiles";
    stdenv = {
      hostPlatform = { };
      buildPlatform.canExecute = _: true;
    };
  };
  check = import ../../nix/module-eval.nix {
    inherit lib package;
    pkgs = {
      nix = "nix";
      path = "/nixpkgs";
    };
  };
in
{
  inherit (check) installPhase;
  preInstall = check.preInstall or "";
  postInstall = check.postInstall or "";
}
