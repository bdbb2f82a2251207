# The limits and reserved names of the NixOS module's types (modules/lib.nix),
# for tests/nix_eval.rs to compare with the binary's.
{ nixpkgsLib }:

let
  nl = import ../../modules/lib.nix { lib = import nixpkgsLib; };
in
{
  inherit (nl)
    limits
    reservedNames
    reservedSuffixes
    labelPrefix
    ;
}
