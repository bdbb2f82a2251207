# Entry point for users without flakes: imports = [ /path/to/nixarr-units/modules ];
# (then set services.nixarr-units.package, or add the overlay in nix/overlay.nix).
{
  imports = [ ./nixarr-units.nix ];
}
