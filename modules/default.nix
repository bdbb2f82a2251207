# Entry point for users without flakes: imports = [ /path/to/nixarr-units/modules ];
# The package is pkgs.nixarr-units when pkgs has it (add the overlay
# nix/overlay.nix, or set services.nixarr-units.package), else it is built
# from this source tree.
{
  imports = [ ./nixarr-units.nix ];
}
