{ lib }:
{
  description = "imageLock: the lock file reaches the spec as a store path (an input of the units' derivation) and the binary pins the units from it";
  config = {
    services.nixarr-units = {
      imageLock = ../fixtures/images.lock.json;
      sonarr.enable = true;
      radarr.enable = true;
    };
  };
  checks = config: {
    lock-in-store =
      let
        l = config.services.nixarr-units.spec.imageLock;
      in
      lib.hasPrefix builtins.storeDir l && lib.hasSuffix "-images.lock.json" l;
    # The store path of that very file (nix-instantiate --eval computes it
    # without adding the file to the store).
    lock-is-the-file =
      baseNameOf config.services.nixarr-units.spec.imageLock
      == baseNameOf "${../fixtures/images.lock.json}";
  };
}
