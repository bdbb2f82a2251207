# nix/package.nix's postInstall as stdenv would run it (native build),
# with nixpkgs' lib and stand-ins for the build inputs. tests/nix_eval.rs
# runs it in bash against the built binary.
{ nixpkgsLib }:

let
  lib = import nixpkgsLib;
  package = import ../../nix/package.nix {
    inherit lib;
    rustPlatform.buildRustPackage = attrs: attrs;
    installShellFiles = "installShellFiles";
    stdenv = {
      hostPlatform = { };
      buildPlatform.canExecute = _: true;
    };
  };
in
{
  inherit (package) postInstall nativeBuildInputs;
}
