# Test-only stand-in for the parts of NixOS that the module reads and writes,
# so that the module can be evaluated with nixpkgs' lib alone (no nixpkgs, no
# NixOS). Declarations are loose on purpose (the real ones live in NixOS);
# what matters here is that the module's own options are typed.
#
# withSops: also declare the sops-nix options the module reads and writes
# (secrets.<name>.path, .restartUnits), and templates and placeholders,
# which it must leave alone (no secret value goes through a template).
#
# pkgs: a function of the stub package set (tests/nix/stub-pkgs.nix) giving
# the `pkgs` the modules see (a scenario may drop or overlay packages).
{
  withSops ? true,
  pkgs ? (p: p),
}:
{ config, lib, ... }:

let
  inherit (lib) mkOption types;

  stubPkgs = import ./stub-pkgs.nix { inherit lib; };
  pkgs' = pkgs stubPkgs;

  anything = mkOption {
    type = types.attrsOf types.anything;
    default = { };
  };
  list = elem: mkOption {
    type = types.listOf elem;
    default = [ ];
  };
  flag = mkOption {
    type = types.bool;
    default = false;
  };
  # The native services the module asserts against (legacy.units of the catalog).
  native = [
    "sonarr"
    "radarr"
    "prowlarr"
    "lidarr"
    "bazarr"
    "jellyfin"
    "transmission"
    "qbittorrent"
    "sabnzbd"
    "jellyseerr"
    "seerr"
    "overseerr"
  ];
in
{
  options =
    {
      assertions = list types.unspecified;
      warnings = list types.str;
      time.timeZone = mkOption {
        type = types.nullOr types.str;
        default = null;
      };
      environment.systemPackages = list types.package;
      environment.etc = mkOption {
        type = types.attrsOf (
          types.submodule {
            options.source = mkOption { type = types.str; };
          }
        );
        default = { };
      };
      systemd.packages = list types.package;
      systemd.services = anything;
      systemd.targets = mkOption {
        type = types.attrsOf (types.submodule { options.wantedBy = list types.str; });
        default = { };
      };
      systemd.tmpfiles.rules = list types.str;
      users.users = anything;
      users.groups = mkOption {
        type = types.attrsOf (
          types.submodule {
            options.gid = mkOption {
              type = types.nullOr types.int;
              default = null;
            };
          }
        );
        default = { };
      };
      networking.firewall.allowedTCPPorts = list types.port;
      networking.firewall.allowedUDPPorts = list types.port;
      networking.firewall.interfaces = mkOption {
        type = types.attrsOf (
          types.submodule {
            options.allowedTCPPorts = list types.port;
            options.allowedUDPPorts = list types.port;
          }
        );
        default = { };
      };
      virtualisation.podman = {
        enable = flag;
        package = mkOption {
          type = types.package;
          default = stubPkgs.podman;
        };
      };
      virtualisation.docker = {
        enable = flag;
        package = mkOption {
          type = types.package;
          default = stubPkgs.docker;
        };
      };
      services = lib.genAttrs native (_: {
        enable = flag;
      });
    }
    // lib.optionalAttrs withSops {
      sops = {
        secrets = mkOption {
          type = types.attrsOf (
            types.submodule (
              { name, ... }:
              {
                options.restartUnits = list types.str;
                options.path = mkOption {
                  type = types.str;
                  default = "/run/secrets/${name}";
                };
              }
            )
          );
          default = { };
        };
        templates = mkOption {
          type = types.attrsOf (
            types.submodule (
              { name, ... }:
              {
                options.content = mkOption { type = types.str; };
                options.path = mkOption {
                  type = types.str;
                  default = "/run/secrets/rendered/${name}";
                };
              }
            )
          );
          default = { };
        };
        placeholder = mkOption {
          type = types.attrsOf types.str;
          default = { };
        };
      };
    };

  config = {
    _module.args.pkgs = pkgs';
  }
  // lib.optionalAttrs withSops {
    # As sops-nix does: one placeholder per declared secret.
    sops.placeholder = lib.mapAttrs (n: _: lib.mkDefault "<SOPS:${n}:PLACEHOLDER>") config.sops.secrets;
  };
}
