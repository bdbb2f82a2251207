# Adds pkgs.nixarr-units, built from this source tree; for users without
# flakes (see modules/default.nix) and as the flake's overlays.default:
#
#   nixpkgs.overlays = [ (import /path/to/nixarr-units/nix/overlay.nix) ];
final: _prev: {
  nixarr-units = final.callPackage ./package.nix { };
}
