# Test-only stand-in for the parts of NixOS that the module reads and writes,
# so that the module can be evaluated with nixpkgs' lib alone (no nixpkgs, no
# NixOS). Declarations are loose on purpose (the real ones live in NixOS);
# what matters here is that the module's own options are typed.
#
# withSops: also declare the sops-nix options the module reads and writes
# (secrets.<name>.path, .restartUnits), and templates and placeholders,
# which it must leave alone (no secret value goes through a template).
{ withSops ? true }:
{ config, lib, ... }:

let
  inherit (lib) mkOption types;

  # A fake derivation: enough for string interpolation, lib.getExe and
  # types.package; never built.
  fakeDrv =
    name: attrs:
    {
      type = "derivation";
      inherit name;
      outPath = "/nix/store/00000000000000000000000000000000-${name}";
      drvPath = "/nix/store/00000000000000000000000000000000-${name}.drv";
      meta = { };
    }
    // attrs;

  pkgs = {
    nixarr-units = fakeDrv "nixarr-units-0.1.0" {
      pname = "nixarr-units";
      version = "0.1.0";
      meta.mainProgram = "nixarr-units";
    };
    podman = fakeDrv "podman-5.4.2" { version = "5.4.2"; };
    docker = fakeDrv "docker-27.5.1" { version = "27.5.1"; };
    writeText = name: text: fakeDrv name { inherit text; };
    runCommand = name: env: script: fakeDrv name { inherit env script; };
  };

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
      virtualisation.podman = {
        enable = flag;
        package = mkOption {
          type = types.package;
          default = pkgs.podman;
        };
      };
      virtualisation.docker = {
        enable = flag;
        package = mkOption {
          type = types.package;
          default = pkgs.docker;
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
    _module.args.pkgs = pkgs;
  }
  // lib.optionalAttrs withSops {
    # As sops-nix does: one placeholder per declared secret.
    sops.placeholder = lib.mapAttrs (n: _: lib.mkDefault "<SOPS:${n}:PLACEHOLDER>") config.sops.secrets;
  };
}
