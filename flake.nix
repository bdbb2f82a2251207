{
  description = "nixarr-units: a media stack (Sonarr, Radarr, Jellyfin, …) as podman or Docker containers under systemd, declared in NixOS";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixpkgs-unstable";

  outputs =
    { self, nixpkgs }:
    let
      inherit (nixpkgs) lib;
      systems = [
        "x86_64-linux"
        "aarch64-linux"
      ];
      forAllSystems = f: lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});
    in
    {
      overlays.default = import ./nix/overlay.nix;

      packages = forAllSystems (pkgs: rec {
        nixarr-units = pkgs.callPackage ./nix/package.nix { };
        default = nixarr-units;
      });

      # The module alone is ./modules (its package option defaults to
      # pkgs.nixarr-units, e.g. from the overlay); this one also brings the
      # package of this flake. Its key makes importing it twice (say as
      # both names below) import it once.
      nixosModules.default =
        { lib, pkgs, ... }:
        {
          key = "${toString ./flake.nix}#nixosModules.default";
          _file = "${toString ./flake.nix}#nixosModules.default";
          imports = [ ./modules ];
          services.nixarr-units.package =
            lib.mkDefault
              self.packages.${pkgs.stdenv.hostPlatform.system}.default;
        };
      nixosModules.nixarr-units = self.nixosModules.default;

      checks = forAllSystems (
        pkgs:
        let
          package = self.packages.${pkgs.stdenv.hostPlatform.system}.default;
        in
        {
          # The package build runs the unit, golden and CLI tests.
          inherit package;
          # Module evaluation scenarios, the .nix parse check and the
          # docs/options.md freshness check (tests/nix_eval.rs).
          module-eval = import ./nix/module-eval.nix { inherit lib pkgs package; };
          # Two apps and a second instance, from dockerTools images, in a VM.
          vm = import ./nix/vm-test.nix { inherit pkgs self; };
        }
      );

      formatter = forAllSystems (pkgs: pkgs.nixfmt-tree);

      devShells = forAllSystems (pkgs: {
        default = pkgs.mkShell {
          inputsFrom = [ self.packages.${pkgs.stdenv.hostPlatform.system}.default ];
          packages = [
            pkgs.clippy
            pkgs.rustfmt
            pkgs.rust-analyzer
            pkgs.nixfmt
          ];
          # For tests/nix_eval.rs.
          NIXPKGS_LIB = "${nixpkgs}/lib";
        };
      });
    };
}
