# Test-only stand-in for the parts of NixOS that the module reads and writes,
# so that the module can be evaluated with nixpkgs' lib alone (no nixpkgs, no
# NixOS). Declarations are loose on purpose (the real ones live in NixOS);
# what matters here is that the module's own options are typed.
#
# withSops: also declare sops-nix's options in their real shapes (secrets,
# defaultSopsFile), and templates and placeholders, which the module must
# leave alone (no secret value goes through a template). tests/nix/eval.nix
# reads every secret's sopsFile, as sops-nix's manifest does.
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
  sopsCfg = config.sops;
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
      # As NixOS: a unit is enabled unless it says otherwise.
      systemd.services = mkOption {
        type = types.attrsOf (
          types.submodule {
            freeformType = types.attrsOf types.anything;
            options.enable = mkOption {
              type = types.bool;
              default = true;
            };
          }
        );
        default = { };
      };
      systemd.targets = mkOption {
        type = types.attrsOf (types.submodule { options.wantedBy = list types.str; });
        default = { };
      };
      systemd.tmpfiles.rules = list types.str;
      users.users = anything;
      security.polkit.enable = flag;
      security.polkit.extraConfig = mkOption {
        type = types.lines;
        default = "";
      };
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
      services =
        lib.genAttrs native (_: {
          enable = flag;
        })
        // lib.genAttrs [ "nginx" "caddy" ] (_: {
          enable = flag;
          # Loose: the real ones are submodules; `anything` merges the
          # locations of one host given in several definitions.
          virtualHosts = mkOption {
            type = types.attrsOf types.anything;
            default = { };
          };
        });
    }
    // lib.optionalAttrs withSops {
      sops = {
        # As sops-nix declares it (modules/sops/default.nix): attrsOf a
        # submodule whose sopsFile falls back to sops.defaultSopsFile, which
        # has no default, so a secret declared without either fails.
        secrets = mkOption {
          type = types.attrsOf (
            types.submodule (
              { config, name, ... }:
              {
                options = {
                  name = mkOption {
                    type = types.str;
                    default = name;
                  };
                  key = mkOption {
                    type = types.str;
                    default = name;
                  };
                  path = mkOption {
                    type = types.str;
                    default = "/run/secrets/${config.name}";
                  };
                  format = mkOption {
                    type = types.enum [
                      "yaml"
                      "json"
                      "binary"
                      "dotenv"
                      "ini"
                    ];
                    default = "yaml";
                  };
                  mode = mkOption {
                    type = types.str;
                    default = "0400";
                  };
                  owner = mkOption {
                    type = types.nullOr types.str;
                    default = null;
                  };
                  group = mkOption {
                    type = types.nullOr types.str;
                    default = null;
                  };
                  sopsFile = mkOption {
                    type = types.path;
                    default = sopsCfg.defaultSopsFile;
                  };
                  restartUnits = list types.str;
                  reloadUnits = list types.str;
                  neededForUsers = flag;
                };
              }
            )
          );
          default = { };
        };
        defaultSopsFile = mkOption { type = types.path; };
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
