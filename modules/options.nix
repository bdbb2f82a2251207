# Option declarations of services.nixarr-units. Kept apart from the
# configuration logic (nixarr-units.nix) so both stay readable.
{
  config,
  lib,
  pkgs,
  ...
}:

let
  inherit (lib)
    mkOption
    mkEnableOption
    types
    literalExpression
    literalMD
    ;

  cfg = config.services.nixarr-units;
  nl = import ./lib.nix { inherit lib; };
  inherit (nl) catalog;
  t = nl.types';

  secretsNote = ''
    A secret's value never passes through Nix: the spec (in the Nix store)
    holds only the path of the file that holds it, and the secret bridge
    `<prefix>-<service>-secrets.service`, a hardened oneshot that runs before
    the container, checks every source (it exists and is a regular,
    non-empty file; a group- or world-readable one gets a warning) and only
    then delivers it as `mode` says. A bad source fails the bridge, so the
    container does not start, and `systemctl status <prefix>-<service>-secrets`
    names the secret and its source, never the value. Stopping the container
    removes every copy. Give each secret as a sops-nix secret name
    (`sopsSecret`; a changed secret restarts the container) or as a plain
    path (`file`: agenix, or any file; nothing restarts the container when
    it changes).
  '';

  secretModule =
    { name, ... }:
    {
      options = {
        sopsSecret = mkOption {
          type = types.nullOr types.nonEmptyStr;
          default = null;
          example = "sonarr/api-key";
          description = ''
            Name of the sops-nix secret (`sops.secrets.<name>`) holding the
            value of `${name}`: its `path` becomes the source, and the
            container's unit is added to its `restartUnits`, so a changed
            secret restarts the container. Needs sops-nix's NixOS module,
            and the secret declared there as usual (with its `sopsFile`, or
            `sops.defaultSopsFile`): this module never declares a secret, so
            a misspelt name fails evaluation naming this option instead of
            creating a new, empty secret. Give exactly one of `sopsSecret`
            and `file`.
          '';
        };
        file = mkOption {
          type = types.nullOr t.secretPath;
          default = null;
          example = literalExpression "config.age.secrets.sonarr-api-key.path";
          description = ''
            Path of the file holding the value of `${name}`, read on the
            host when the container starts (agenix, sops-nix by path, or any
            file readable by root). Not a file in the Nix store (it is
            world-readable). Give exactly one of `sopsSecret` and `file`.
          '';
        };
        mode = mkOption {
          type = types.nullOr (
            types.enum [
              "file"
              "env"
              "envFile"
              "podmanSecret"
            ]
          );
          default = null;
          description = ''
            How the value reaches the container; null means `file`, for
            every container (catalog app or not): no secret value is ever in
            a container's environment unless asked for here.

            - `file`: a 0400 copy in `/run/nixarr-units/secrets/<container>/`,
              mounted read-only at `/run/secrets/${name}`; the container's
              environment holds only that path, in the variable `fileEnv`
              names (default: the container's `secretFileEnv`, e.g.
              `FILE__${name}`), so `podman inspect` and `docker inspect`
              never show the value.
            - `env`: the value as the variable `${name}`. With podman 5.3 or
              later a podman secret of type `env`, which `podman inspect`
              does not show. With Docker or an older podman the engine shows
              it in `inspect`: refused unless `allowEnvironmentValue` is
              set, and then the build prints a warning.
            - `envFile`: a 0400 env file in `/run/nixarr-units/env/` passed
              with `--env-file`; `inspect` shows the value, so it needs
              `allowEnvironmentValue`. Values with a line break are refused.
            - `podmanSecret` (podman backend only): a podman secret
              (`podman secret create`) passed with `--secret` as a variable
              or a file (`podmanSecretType`).
          '';
        };
        fileEnv = mkOption {
          type = types.nullOr t.envName;
          default = null;
          example = "POSTGRES_PASSWORD_FILE";
          description = ''
            With `mode = "file"` (the default): the variable that carries the
            file's path, for images with their own convention (the official
            postgres image reads `POSTGRES_PASSWORD_FILE`). Null means the
            container's `secretFileEnv` pattern.
          '';
        };
        allowEnvironmentValue = mkOption {
          type = types.bool;
          default = false;
          description = ''
            Accept that `mode = "env"` on Docker or podman before 5.3, or
            `mode = "envFile"`, puts the value where `docker inspect` /
            `podman inspect` show it to anyone allowed to run them. The
            build prints a warning naming the container and the secret.
          '';
        };
        podmanSecretType = mkOption {
          type = types.nullOr (
            types.enum [
              "env"
              "mount"
            ]
          );
          default = null;
          description = ''
            With `mode = "podmanSecret"` only: the value as the file
            `/run/secrets/${name}` (`mount`, the default when null; cannot be
            combined with `file` secrets in the same container, which use
            `/run/secrets` too) or as the variable `${name}` (`env`; podman
            before 5.3 shows such values in `podman inspect`, so it is refused
            there).
          '';
        };
      };
    };

  secretsOption = mkOption {
    type = types.attrsOf (types.submodule secretModule);
    default = { };
    example = literalExpression ''
      {
        SONARR__AUTH__APIKEY.sopsSecret = "sonarr/api-key";
        SONARR__POSTGRES__PASSWORD.file = config.age.secrets.sonarr-db.path;
      }
    '';
    description = ''
      Secret environment variables, by the variable name the app sees.

      ${secretsNote}
    '';
  };

  # Options every kind of container has, in the spec's generic shape.
  commonOptions = {
    proxy = {
      subdomain = mkOption {
        type = types.nullOr (types.strMatching "[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?");
        default = null;
        example = "sonarr";
        description = ''
          Serve this app behind the reverse proxy (`proxy.enable`) at
          `<subdomain>.<proxy.domain>`. Give this or `path`, not both.
        '';
      };
      path = mkOption {
        type = types.nullOr (types.strMatching "(/[A-Za-z0-9._-]+)+");
        default = null;
        example = "/sonarr";
        description = ''
          Serve this app behind the reverse proxy at `<proxy.domain><path>`.
          Sonarr, Radarr, Lidarr and Prowlarr are told the URL base through
          their container; the other catalog apps cannot be, and need a
          `subdomain`. Any other container must serve under that path
          itself.
        '';
      };
    };
    imageFile = mkOption {
      type = types.nullOr types.path;
      default = null;
      example = literalExpression "pkgs.dockerTools.buildImage { name = \"my-app\"; tag = \"1\"; }";
      description = ''
        An image archive (e.g. built with `dockerTools`) loaded before the
        container starts instead of pulling `image` from a registry; `image`
        must then name the image the archive holds.
      '';
    };
    environment = mkOption {
      type = types.attrsOf t.line;
      default = { };
      example = {
        SONARR__LOG__LEVEL = "debug";
      };
      description = ''
        Environment variables for the container. Merged over the catalog's
        (and over `PUID`, `PGID`, `TZ`, `UMASK` for LinuxServer.io images).
        Not for secrets: values end up in the Nix store and in
        `podman inspect`; use `secrets`.
      '';
    };
    environmentFiles = mkOption {
      type = types.listOf t.absolutePath;
      default = [ ];
      example = [ "/etc/nixarr/sonarr.env" ];
      description = ''
        Files of `VAR=value` lines read by the engine when the container
        starts (`--env-file`), e.g. settings kept outside the Nix store.
        Their variables are visible in `podman inspect` / `docker inspect`;
        for secrets use `secrets`, which needs no such file.
      '';
    };
    secrets = secretsOption;
    vpn = mkOption {
      type = types.bool;
      default = false;
      description = ''
        Run inside the network namespace of the Gluetun container (see
        `services.nixarr-units.vpn`), so all traffic goes through the VPN.
        Published ports move to the Gluetun container; the container stops
        when the tunnel's unit stops.
      '';
    };
    dependsOn = mkOption {
      type = types.listOf t.name;
      default = [ ];
      example = [ "prowlarr" ];
      description = ''
        Containers (by service name) this one needs; it starts after they
        are healthy and stops with them.
      '';
    };
    extraArgs = mkOption {
      type = types.listOf t.line;
      default = [ ];
      example = [ "--shm-size=256m" ];
      description = "Extra arguments for `podman run` / `docker run`, passed as written.";
    };
    puid = mkOption {
      type = types.nullOr t.id;
      default = null;
      description = ''
        User id the container runs as and owns its config directory with;
        null means the catalog's fixed id or `defaults.puid`.
      '';
    };
    pgid = mkOption {
      type = types.nullOr t.id;
      default = null;
      description = ''
        Group id of the container and its config directory; null means the
        catalog's fixed id or `defaults.pgid`.
      '';
    };
    openFirewall = mkOption {
      type = types.bool;
      default = cfg.openFirewall;
      defaultText = literalExpression "config.services.nixarr-units.openFirewall";
      description = ''
        Whether this container's ports are open to the network: published
        on every address and opened in the firewall (except ports bound to
        a loopback address).

        When false, every port without an address of its own is published
        only on `services.nixarr-units.bindAddress` (127.0.0.1 unless you
        change it), so the app is reachable from this host (and a reverse
        proxy on it) but not from the LAN. Closing the firewall alone would
        not do: podman and Docker publish ports with DNAT rules that act
        before the firewall's INPUT chain, so a port published on all
        addresses is reachable from the LAN whatever the firewall says.
      '';
    };
  };

  # A catalog app: `services.nixarr-units.<app>` (fixedApp given) or
  # `services.nixarr-units.instances.<name>` (fixedApp null, `app` option).
  appModule =
    fixedApp:
    { name, config, ... }:
    let
      app = if fixedApp != null then fixedApp else config.app;
      preset = catalog.${app};
      web = nl.webPort app;
      title = if fixedApp != null then preset.description else "the app";
      fixedOnly = value: if fixedApp != null then { } else value;
    in
    {
      options = commonOptions // {
        enable =
          if fixedApp != null then
            mkEnableOption "${preset.description} as a container"
          else
            mkOption {
              type = types.bool;
              default = true;
              description = "Whether to run this instance.";
            };
        port = mkOption {
          type = t.port;
          default = web.host or web.container;
          description =
            "Host port of the web interface"
            + lib.optionalString (fixedApp != null) " (container port ${toString web.container})"
            + ". The app's other ports (e.g. BitTorrent peer ports) keep the catalog's values.";
        }
        // fixedOnly {
          defaultText = literalMD "the catalog's web port of `app`";
        };
        bindAddress = mkOption {
          type = types.nullOr t.ipAddress;
          default = null;
          example = "127.0.0.1";
          description = ''
            Host address the web port is published on. Null means: every
            address when `openFirewall` is true, else
            `services.nixarr-units.bindAddress` (127.0.0.1 by default).
          '';
        };
        image = mkOption {
          type = t.image;
          default = preset.image;
          example = "lscr.io/linuxserver/sonarr:4.0.15";
          description = "Container image of ${title}; pin a tag or digest for reproducible deployments.";
        }
        // fixedOnly {
          defaultText = literalMD "the catalog's image of `app`";
        };
        devices = mkOption {
          type = types.listOf t.device;
          default = [ ];
          example = [
            "/dev/dri"
            {
              host = "/dev/ttyUSB0";
              container = "/dev/zigbee";
              permissions = "rw";
            }
          ];
          description = "Host devices passed to the container (`--device`): a path, `HOST:CONTAINER[:PERMISSIONS]`, or its parts by name.";
        };
        migrateFrom = mkOption {
          type = types.nullOr (
            types.enum [
              "nixpkgs"
              "nixarr"
            ]
          );
          default = null;
          example = "nixpkgs";
          description = ''
            The native installation this container takes over, for
            `nixarr-migrate migrate ${if fixedApp != null then fixedApp else "<name>"}`:
            `"nixpkgs"` (the NixOS service, data in its default data
            directory) or `"nixarr"` (nixarr's layout under
            `/data/.state/nixarr`). Setting it also allows the native service
            to stay enabled while you migrate; disable it afterwards.
          '';
        };
        legacyDataDir = mkOption {
          type = types.nullOr t.absolutePath;
          default = null;
          example = "/srv/sonarr";
          description = ''
            Data directory of the native installation when it is not the
            default for `migrateFrom`.
          '';
        };
      }
      // lib.optionalAttrs (fixedApp == null) {
        app = mkOption {
          type = types.enum nl.appNames;
          example = "sonarr";
          description = "The catalog app this instance runs; its defaults come from the catalog.";
        };
      };
    };

  portModule = {
    options = {
      host = mkOption {
        type = types.nullOr t.port;
        default = null;
        description = "Host port; null means the same as the container port.";
      };
      container = mkOption {
        type = t.port;
        description = "Port inside the container.";
      };
      protocol = mkOption {
        type = types.enum [
          "tcp"
          "udp"
        ];
        default = "tcp";
        description = "Transport protocol.";
      };
      address = mkOption {
        type = types.nullOr t.ipAddress;
        default = null;
        example = "127.0.0.1";
        description = ''
          Host address to bind. Null means: every address when the
          container's `openFirewall` is true, else
          `services.nixarr-units.bindAddress` (127.0.0.1 by default).
        '';
      };
    };
  };

  volumeModule = {
    options = {
      host = mkOption {
        type = t.mountPath;
        description = "Host directory or file.";
      };
      container = mkOption {
        type = t.mountPath;
        description = "Path inside the container.";
      };
      readOnly = mkOption {
        type = types.bool;
        default = false;
        description = "Mount read-only.";
      };
      create = mkOption {
        type = types.bool;
        default = false;
        description = ''
          Create the host directory (owned by the container's puid:pgid,
          mode 0750) when it does not exist. Only then: an existing
          directory keeps its owner and mode at every boot and switch, so a
          `chown` or `chmod` of yours stays.
        '';
      };
    };
  };

  healthModule = {
    options = {
      enable = mkOption {
        type = types.bool;
        default = true;
        description = "Whether to probe the container at all; false also drops the catalog's probe.";
      };
      cmd = mkOption {
        type = types.nullOr t.line;
        default = null;
        example = "curl -fsS http://localhost:8080/health";
        description = "Command run inside the container by the engine (`/bin/sh -c`).";
      };
      http = mkOption {
        type = types.nullOr t.httpProbe;
        default = null;
        example = "/health";
        description = "URL probed from the host, or a path on the host port that publishes `port`.";
      };
      port = mkOption {
        type = types.nullOr t.port;
        default = null;
        description = "Container port (published over tcp) whose host port `http` paths and `tcp` probe.";
      };
      tcp = mkOption {
        type = types.bool;
        default = false;
        description = "Probe a TCP connect to `port` instead of HTTP.";
      };
      method = mkOption {
        type = types.nullOr (
          types.enum [
            "GET"
            "HEAD"
            "POST"
          ]
        );
        default = null;
        description = "HTTP method; null means GET.";
      };
      expectStatus = mkOption {
        type = types.nullOr (t.between "httpStatus");
        default = null;
        description = "Expected HTTP status; null accepts 200-399.";
      };
      expectBody = mkOption {
        type = types.nullOr t.line;
        default = null;
        description = "Text the response body must contain.";
      };
      interval = mkOption {
        type = types.nullOr t.duration;
        default = null;
        description = "Time between probes; null means 30s.";
      };
      timeout = mkOption {
        type = types.nullOr t.duration;
        default = null;
        description = "Time a probe may take; null means 5s.";
      };
      retries = mkOption {
        type = types.nullOr (t.between "healthRetries");
        default = null;
        description = "Failed probes in a row before the container counts as unhealthy; null means 3.";
      };
      startPeriod = mkOption {
        type = types.nullOr t.duration;
        default = null;
        description = "Grace period after start during which failures do not count; null means 0s.";
      };
    };
  };

  migrationModule = {
    options = {
      legacyUnit = mkOption {
        type = types.nullOr (types.strMatching "[A-Za-z0-9_.@:-]+\\.service");
        default = null;
        example = "sonarr.service";
        description = "The native unit to migrate from; null means the catalog's.";
      };
      legacyDataDir = mkOption {
        type = types.nullOr t.absolutePath;
        default = null;
        description = "The native service's data directory; null means the catalog's.";
      };
      targetDir = mkOption {
        type = types.nullOr t.absolutePath;
        default = null;
        description = "Host directory the container keeps its config in; null means its config volume.";
      };
    };
  };

  containerModule =
    { name, ... }:
    {
      options = commonOptions // {
        enable = mkOption {
          type = types.bool;
          default = true;
          description = "Whether to run this container.";
        };
        app = mkOption {
          type = types.nullOr (types.enum nl.allAppNames);
          default = null;
          description = ''
            A catalog app whose preset (image, ports, volumes, health probe,
            migration facts) this container starts from; the options below
            override it. Null for any other container.
          '';
        };
        description = mkOption {
          type = types.nullOr t.text;
          default = null;
          description = "Unit description; null means the catalog's or `<name> (<image>)`.";
        };
        image = mkOption {
          type = types.nullOr t.image;
          default = null;
          example = "ghcr.io/gethomepage/homepage:v1.4.0";
          description = "Container image; required unless `app` is set.";
        };
        ports = mkOption {
          type = types.nullOr (types.listOf (types.submodule portModule));
          default = null;
          example = literalExpression ''
            [
              {
                host = 3000;
                container = 3000;
                address = "127.0.0.1";
              }
            ]
          '';
          description = "Published ports; null means the catalog's (none without `app`).";
        };
        volumes = mkOption {
          type = types.nullOr (types.listOf (types.submodule volumeModule));
          default = null;
          example = literalExpression ''
            [
              {
                host = "/var/lib/nixarr/homepage";
                container = "/app/config";
                create = true;
              }
            ]
          '';
          description = ''
            Bind mounts; null means the catalog's (the config directory
            `<stateDir>/<name>` and, for media apps, `dataDir`).
          '';
        };
        cmd = mkOption {
          type = types.nullOr (types.listOf t.line);
          default = null;
          description = "Arguments after the image (the container's command); null means the image's.";
        };
        entrypoint = mkOption {
          type = types.nullOr t.line;
          default = null;
          description = "Override the image's entrypoint.";
        };
        user = mkOption {
          type = types.nullOr t.line;
          default = null;
          example = "1000:1000";
          description = "User (and group) the container's process runs as (`--user`).";
        };
        init = mkOption {
          type = types.nullOr types.bool;
          default = null;
          description = "Run an init process as PID 1 (`--init`); null means the catalog's choice (off).";
        };
        capAdd = mkOption {
          type = types.nullOr (types.listOf t.capability);
          default = null;
          example = [ "NET_ADMIN" ];
          description = "Capabilities to add; null means the catalog's.";
        };
        devices = mkOption {
          type = types.nullOr (types.listOf t.device);
          default = null;
          example = [
            "/dev/dri"
            {
              host = "/dev/ttyUSB0";
              container = "/dev/zigbee";
              permissions = "rw";
            }
          ];
          description = "Host devices passed to the container (`--device`): a path, `HOST:CONTAINER[:PERMISSIONS]`, or its parts by name; null means the catalog's.";
        };
        labels = mkOption {
          type = types.attrsOf t.line;
          default = { };
          description = "Container labels (keys starting with `io.nixarr.` are reserved).";
        };
        secretFileEnv = mkOption {
          type = types.nullOr t.secretFileEnv;
          default = null;
          example = "{name}_FILE";
          description = ''
            For an image that reads a variable's value from a file: the
            variable that carries the file's path, with `{name}` standing for
            the secret's name (`FILE__{name}` for LinuxServer.io images,
            `{name}_FILE` for many official images). It is the path
            variable of every `file` secret of this container (a secret's
            own `fileEnv` wins). Null means the catalog's, and `FILE__{name}`
            (the LinuxServer.io convention) without `app`.
          '';
        };
        health = mkOption {
          type = types.nullOr (types.submodule healthModule);
          default = null;
          description = ''
            Health probe, replacing the catalog's as a whole; null keeps the
            catalog's; `{ enable = false; }` disables probing.
          '';
        };
        restart = mkOption {
          type = types.nullOr (
            types.enum [
              "no"
              "on-failure"
              "always"
            ]
          );
          default = null;
          description = "systemd `Restart=` of the unit; null means on-failure.";
        };
        stopTimeout = mkOption {
          type = types.nullOr (t.between "stopTimeout");
          default = null;
          description = "Seconds the container gets between its stop signal and SIGKILL; null means 60 for a catalog app and 10 (the engines' default) for any other image.";
        };
        startTimeout = mkOption {
          type = types.nullOr (t.between "startTimeout");
          default = null;
          description = "Seconds the unit may take to start and become healthy; null means 900.";
        };
        migration = mkOption {
          type = types.nullOr (types.submodule migrationModule);
          default = null;
          description = "Migration source for `nixarr-migrate`; null keeps the catalog's.";
        };
      };
    };

  vpnModule = {
    options = {
      enable = mkEnableOption "the Gluetun VPN container that containers with `vpn = true` join";
      provider = mkOption {
        type = t.line;
        example = "mullvad";
        description = "Gluetun's `VPN_SERVICE_PROVIDER` (e.g. mullvad, protonvpn, custom).";
      };
      type = mkOption {
        type = types.enum [
          "wireguard"
          "openvpn"
        ];
        default = "wireguard";
        description = "Gluetun's `VPN_TYPE`.";
      };
      serverCountries = mkOption {
        type = types.listOf t.line;
        default = [ ];
        example = [ "Netherlands" ];
        description = "Gluetun's `SERVER_COUNTRIES`; empty leaves the choice to Gluetun.";
      };
      image = mkOption {
        type = t.image;
        default = catalog.gluetun.image;
        description = "Gluetun's container image.";
      };
      inherit (commonOptions) imageFile;
      environment = commonOptions.environment // {
        example = {
          WIREGUARD_ADDRESSES = "10.64.0.2/32";
        };
        description = "Further Gluetun settings as environment variables (see the Gluetun wiki).";
      };
      environmentFiles = commonOptions.environmentFiles // {
        example = [ "/etc/nixarr/gluetun.env" ];
        description = ''
          Files of further Gluetun settings as `VAR=value` lines, read when
          the container starts; visible in `podman inspect` /
          `docker inspect`. For the private key and credentials use
          `secrets`.
        '';
      };
      secrets = commonOptions.secrets // {
        example = literalExpression ''
          {
            WIREGUARD_PRIVATE_KEY.sopsSecret = "vpn/wireguard-key";
            WIREGUARD_PRESHARED_KEY.file = config.age.secrets.wg-psk.path;
          }
        '';
        description = ''
          Gluetun's secrets (the WireGuard private key, OpenVPN
          credentials, …), by variable name. By default each is delivered
          as a file with Gluetun's own convention: the copy is mounted at
          `/run/secrets/<VAR>` and `<VAR>_SECRETFILE` points Gluetun to it,
          so the key is never in the container's environment. Gluetun reads
          these variables from files: `WIREGUARD_PRIVATE_KEY`,
          `WIREGUARD_PRESHARED_KEY`, `WIREGUARD_ADDRESSES`, `WIREGUARD_CONF`,
          `OPENVPN_USER`, `OPENVPN_PASSWORD`, `OPENVPN_CLIENTKEY`,
          `OPENVPN_CLIENTCRT`, `OPENVPN_ENCRYPTED_KEY`,
          `OPENVPN_KEY_PASSPHRASE`, `HTTPPROXY_USER`, `HTTPPROXY_PASSWORD`,
          `SHADOWSOCKS_PASSWORD` (its wiki's "Docker secrets" page); for any
          other variable set its `mode = "env"`.

          ${secretsNote}
        '';
      };
    };
  };
in
{
  options.services.nixarr-units = {
    enable = mkOption {
      type = types.bool;
      default =
        lib.any (app: cfg.${app}.enable) nl.appNames
        || lib.any (i: i.enable) (lib.attrValues cfg.instances)
        || lib.any (c: c.enable) (lib.attrValues cfg.containers)
        || cfg.vpn.enable;
      defaultText = literalMD "`true` when any app, instance, container or the VPN is enabled";
      example = false;
      description = ''
        Whether to run the stack (podman or Docker containers supervised by
        systemd). Enabling an app, e.g.
        `services.nixarr-units.sonarr.enable = true;`, is enough; set this to
        false to turn the whole stack off and keep its configuration.
      '';
    };

    package = mkOption {
      type = types.package;
      default = pkgs.nixarr-units or (pkgs.callPackage ../nix/package.nix { });
      defaultText = literalMD "`pkgs.nixarr-units`, or built from this source tree (`nix/package.nix`) when pkgs has none";
      description = ''
        The nixarr-units package (the renderer, `nixarr-units` and
        `nixarr-migrate`). The flake's module sets it to the flake's own
        package; without flakes it is `pkgs.nixarr-units` (the overlay
        `nix/overlay.nix` adds it) or else built from this source tree.
      '';
    };

    backend = mkOption {
      type = types.enum [
        "podman"
        "docker"
      ];
      default = "podman";
      description = ''
        Container engine. The module enables `virtualisation.podman` or
        `virtualisation.docker` and renders units for that engine's version.
      '';
    };

    prefix = mkOption {
      type = t.prefix;
      default = "nixarr";
      description = ''
        Prefix of every unit, container and the network:
        `<prefix>-<name>.service`, `<prefix>.target`.
      '';
    };

    reconcile = {
      enable = lib.mkEnableOption ''
        the reconcile timer, `<prefix>-reconcile.timer`: every `interval`
        it runs `nixarr-units reconcile` for the stack, which restarts a
        service whose container runs an older configuration than its unit,
        starts a failed service (or one whose container vanished) and
        reports containers that carry the stack's labels without being
        its services' (orphans of removed services, and forged ones made by
        hand), one journal line per pass
      '';
      interval = mkOption {
        type = types.strMatching "([0-9]+(h|m|s|ms))+";
        default = "5m";
        example = "15m";
        description = ''
          Time between passes (Go duration syntax: `30s`, `5m`, `1h`); at
          least 30 seconds, so a pass never races systemd's own restarts.
        '';
      };
      prune = mkOption {
        type = types.bool;
        default = false;
        description = ''
          Whether a pass stops and removes orphan and forged containers
          (never their volumes). Off: they are reported in the journal and
          by `nixarr-units status`, and left alone.
        '';
      };
    };

    api = {
      enable = mkEnableOption ''
        the control API (`nixarr-units serve`, docs/api.md): status,
        start/stop/restart, logs, events and metrics over a unix socket and,
        with `listen`, TCP; socket-activated by `<prefix>-api.socket`
      '';

      listen = mkOption {
        type = types.listOf types.str;
        default = [ ];
        example = [ "127.0.0.1:8089" ];
        description = ''
          TCP addresses (`ADDRESS:PORT`, `[IPv6]:PORT`) the API listens on
          besides its unix socket. Clients on TCP send a token
          (`tokenFile` or `readTokenFile`), which is then required. The
          firewall is not opened for them.
        '';
      };

      socket = mkOption {
        type = types.nullOr types.str;
        default = null;
        example = "/run/nixarr-units/api.sock";
        description = ''
          The unix socket (mode 0660); null means
          `/run/nixarr-units/api.sock`. Whoever can connect to it needs no
          token: its group decides (`group`).
        '';
      };

      group = mkOption {
        type = types.nullOr types.str;
        default = null;
        example = "media";
        description = "Group that may connect to the unix socket; null leaves it to root.";
      };

      user = mkOption {
        type = types.str;
        default = "nixarr-api";
        example = "root";
        description = ''
          User the API runs as. polkit (`security.polkit`, enabled for it)
          lets this user start, stop and restart the stack's units
          (`<prefix>-*`) and nothing else; its unit adds the group
          `systemd-journal` for the logs route. The default user is created
          as a system user; another must be declared in `users.users`.
          `"root"` runs it as root without a polkit rule. As another user
          the API cannot ask the engine (root's), so a service checked only
          by its image's own health command shows health unknown there; use
          `"root"` when the API must show it.
        '';
      };

      tokenFile = mkOption {
        type = types.nullOr types.str;
        default = null;
        example = literalExpression "config.sops.secrets.nixarr-api-token.path";
        description = ''
          File holding the control token (every route; at least 16
          characters), read when the API starts. A path at run time, e.g. a
          sops-nix secret's; never copied to the store.
        '';
      };

      readTokenFile = mkOption {
        type = types.nullOr types.str;
        default = null;
        example = literalExpression "config.sops.secrets.nixarr-api-read-token.path";
        description = ''
          File holding the read token: GET routes only (status, logs,
          events, metrics); a POST with it is answered 403.
        '';
      };
    };

    imageLock = mkOption {
      type = types.nullOr types.path;
      default = null;
      example = literalExpression "./images.lock.json";
      description = ''
        Image lock file (`nixarr-units update --lock FILE` writes it): each
        image that has an entry runs at the digest the lock pins
        (`repo@sha256:…`, the tag kept in the label `io.nixarr.image.tag`),
        so this generation pins its images and rolling back the generation
        rolls back the images. Images without an entry, and `imageFile`
        images, run as they are. `null`: every image runs by its tag.
      '';
    };

    autoUpdate = {
      services = mkOption {
        type = types.listOf types.str;
        default = [ ];
        example = [
          "sonarr"
          "radarr"
        ];
        description = ''
          Services whose images `<prefix>-update.timer` updates on
          `autoUpdate.schedule`: `nixarr-units update` pulls a tag that
          points to a new digest, restarts only those services and puts
          the previous digest back for a service that does not turn
          healthy. The outcome is one journal line per service
          (`journalctl -u <prefix>-update`). A service pinned by
          `imageLock` cannot be updated in place (the lock is part of the
          generation): listing one fails evaluation. Empty: no timer.
        '';
      };
      schedule = mkOption {
        type = types.str;
        default = "weekly";
        example = "Sun 04:00";
        description = "When to update, as systemd's `OnCalendar=` writes it (with up to 30 minutes of random delay).";
      };
    };

    group = mkOption {
      type = types.str;
      default = "media";
      description = "Group that owns `dataDir`; created with gid `defaults.pgid`.";
    };

    createUsers = mkOption {
      type = types.bool;
      default = true;
      description = ''
        Declare the ids the containers run as, so that no other account
        gets them: each container uid from 400 to 999 (NixOS's range for
        system users without a fixed id; `defaults.puid`, 568, is one)
        becomes a system user in `group` (named after `prefix` for
        `defaults.puid`, else `<prefix>-<first service>`), each such gid a
        group. A uid that another declared user already has fails
        evaluation; set this to false to run the containers as that user.
        Ids below 400 (NixOS's static ones, e.g. a native service's, chosen
        to keep file ownership) and from 1000 up (human users: declaring
        one could renumber an existing user) are never declared; a
        container running as a declared human user's uid (Seerr's image
        always runs as 1000) gets a warning.
      '';
    };

    defaults = {
      puid = mkOption {
        type = t.id;
        default = 568;
        description = ''
          User id LinuxServer.io images run as (`PUID`) unless a container
          sets its own. With `createUsers` it is declared as the system user
          named after `prefix`, so NixOS, which picks ids for system users
          without one from 400-999, never gives it to another account.
        '';
      };
      pgid = mkOption {
        type = t.id;
        default = 169;
        description = "Group id of the containers (`PGID`) and of `group` (169 is nixarr's media group).";
      };
      tz = mkOption {
        type = t.timeZone;
        default = if config.time.timeZone != null then config.time.timeZone else "Etc/UTC";
        defaultText = literalExpression ''if config.time.timeZone != null then config.time.timeZone else "Etc/UTC"'';
        example = "Europe/Berlin";
        description = "Time zone of the containers (`TZ`).";
      };
      umask = mkOption {
        type = t.umask;
        default = "002";
        description = "umask of LinuxServer.io containers (`UMASK`), so the media group can write.";
      };
    };

    stateDir = mkOption {
      type = t.mountPath;
      default = "/var/lib/nixarr";
      description = ''
        Parent of every app's config directory (`<stateDir>/<name>`).
        Created root-owned, mode 0755, when missing; after that its owner
        and mode are yours (never reset at boot or switch). Each app's own
        directory `<stateDir>/<name>` is set to the container's uid:gid,
        mode 0750, at every boot and switch, so it follows a changed
        `puid`/`pgid`.
      '';
    };

    dataDir = mkOption {
      type = t.mountPath;
      default = "/data";
      description = ''
        The one media tree (downloads and library), mounted at the same path
        in every media app so that moves are atomic and hardlinks work.
        Created owned by root:`group`, mode 2775, when missing. Only then:
        an existing directory keeps its owner and mode at every boot and
        switch (systemd-tmpfiles' create-only `:` prefix), so a `chown` or
        `chmod` of yours stays.
      '';
    };

    openFirewall = mkOption {
      type = types.bool;
      default = false;
      description = ''
        Default of every container's `openFirewall`: whether its ports are
        published on every address and opened in the firewall. When false
        they are published on `bindAddress` only (see there why).
      '';
    };

    bindAddress = mkOption {
      type = t.ipAddress;
      default = "127.0.0.1";
      example = "192.168.1.10";
      description = ''
        Host address the ports of containers whose firewall is not opened
        (`openFirewall = false`) are published on, unless a port or app
        sets its own address. The default, loopback, keeps those apps
        reachable from this host only (e.g. behind a reverse proxy here).

        Why not simply all addresses behind a closed firewall: podman and
        Docker publish ports with DNAT rules in the `nat` table, which act
        before the `INPUT` chain that the NixOS firewall filters, so a port
        published on all addresses is reachable from the LAN even when
        `networking.firewall` does not open it. For the same reason an
        address given here is reachable by everyone who can reach that
        address, whatever the firewall says: choose one only you can reach
        (a VPN's or a management network's, say).
      '';
    };

    profiles = mkOption {
      type = types.attrsOf (types.nonEmptyListOf t.name);
      default = { };
      example = {
        music = [
          "lidarr"
          "navidrome"
        ];
      };
      description = ''
        Named groups of services for `nixarr-units start|stop|restart|status
        --profile NAME`, beside the groups the catalog apps carry (core,
        music, subtitles, media, requests, downloads, vpn); a name given here
        replaces the catalog's group of that name. Every member must be a
        service of the stack.
      '';
    };

    vpn = mkOption {
      type = types.submodule vpnModule;
      default = { };
      description = ''
        The Gluetun VPN container (service name `gluetun`); containers with
        `vpn = true` share its network namespace.
      '';
    };

    instances = mkOption {
      type = types.attrsOf (types.submodule (appModule null));
      default = { };
      example = literalExpression ''
        {
          sonarr-4k = {
            app = "sonarr";
            port = 8990;
          };
        }
      '';
      description = ''
        Further instances of catalog apps, by service name, with the same
        options as the app's own option set (e.g. a second Sonarr for 4K).
      '';
    };

    containers = mkOption {
      type = types.attrsOf (types.submodule containerModule);
      default = { };
      example = literalExpression ''
        {
          homepage = {
            image = "ghcr.io/gethomepage/homepage:v1.4.0";
            ports = [ { host = 3000; container = 3000; address = "127.0.0.1"; } ];
            volumes = [ { host = "/var/lib/nixarr/homepage"; container = "/app/config"; create = true; } ];
            health = { http = "/api/healthcheck"; port = 3000; };
          };
        }
      '';
      description = ''
        Any container, by service name, in the spec's generic shape
        (docs/spec.md); `app` starts it from a catalog preset.
      '';
    };

    backup = {
      dir = mkOption {
        type = t.absolutePath;
        default = "/var/backup/${cfg.prefix}";
        defaultText = literalExpression ''"/var/backup/''${config.services.nixarr-units.prefix}"'';
        description = ''
          Where `nixarr-units backup` writes consistent copies of the apps'
          data, `<dir>/<service>/<timestamp>/` (each SQLite database copied
          with SQLite's online backup API while the app runs, and checked).
          Give this directory to restic or borg, and run
          `backupPrepareCommand` before each of their runs.
        '';
      };
      schedule = mkOption {
        type = types.nullOr types.nonEmptyStr;
        default = null;
        example = "daily";
        description = ''
          When set, `<prefix>-backup.timer` backs up every app at these times
          (systemd's `OnCalendar=` syntax) into `dir`, keeping `keep` backups
          per app. Not needed when a restic or borg job runs
          `backupPrepareCommand`.
        '';
      };
      keep = mkOption {
        type = t.between "backupKeep";
        default = 7;
        description = "How many backups of each app stay in `dir`; older ones are deleted after each backup.";
      };
      allowStop = mkOption {
        type = types.bool;
        default = false;
        description = ''
          Whether a backup may stop an app for the copy and start it again
          when it cannot be copied while it runs: an app with no SQLite
          database (Transmission, qBittorrent: their files are not
          consistent while they write them) or one whose database stays
          locked. Without it such an app's backup fails, and so does the
          command.
        '';
      };
    };

    proxy = {
      enable = mkEnableOption "a reverse proxy (nginx or Caddy) in front of the apps that set `proxy.subdomain` or `proxy.path`";
      provider = mkOption {
        type = types.enum [
          "nginx"
          "caddy"
        ];
        default = "nginx";
        description = ''
          The proxy: `services.nginx.virtualHosts` or `services.caddy.virtualHosts`
          are generated (WebSocket upgrades passed through, 1 h idle
          timeouts, 100 MB request bodies, security headers, the app
          reached on its loopback port).
        '';
      };
      domain = mkOption {
        type = types.nullOr (types.strMatching "[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?");
        default = null;
        example = "media.example.org";
        description = "The domain apps are served under: `<subdomain>.<domain>` or `<domain><path>`.";
      };
      acme = mkOption {
        type = types.bool;
        default = false;
        description = ''
          HTTPS with certificates from Let's Encrypt: nginx's `enableACME`
          and `forceSSL` (configure `security.acme`: `acceptTerms`,
          `defaults.email`), Caddy's automatic HTTPS. Plain HTTP otherwise.
        '';
      };
      openFirewall = mkOption {
        type = types.bool;
        default = true;
        description = "Whether to open port 80 (and 443 with `acme`) in the firewall for the proxy.";
      };
    };

    backupPrepareCommand = mkOption {
      type = types.str;
      readOnly = true;
      default = lib.escapeShellArgs (
        [
          (lib.getExe cfg.package)
          "backup"
          "--all"
          "--stack"
          cfg.prefix
          "--to"
          cfg.backup.dir
          "--keep"
          (toString cfg.backup.keep)
        ]
        ++ lib.optional cfg.backup.allowStop "--allow-stop"
      );
      defaultText = literalMD "`nixarr-units backup --all --stack <prefix> --to <backup.dir> --keep <backup.keep>`";
      example = literalExpression ''
        {
          services.restic.backups.media = {
            paths = [ config.services.nixarr-units.backup.dir ];
            backupPrepareCommand = config.services.nixarr-units.backupPrepareCommand;
            repository = "/mnt/backup/restic";
            passwordFile = "/run/secrets/restic-password";
            timerConfig.OnCalendar = "daily";
          };
          # or borg: services.borgbackup.jobs.media.preHook = config.services.nixarr-units.backupPrepareCommand;
        }
      '';
      description = ''
        A shell command that writes a fresh, consistent backup of every app
        into `backup.dir` (and keeps `backup.keep` per app): set it as
        `services.restic.backups.<name>.backupPrepareCommand` (or
        `services.borgbackup.jobs.<name>.preHook`) with `backup.dir` among the
        job's paths, so restic or borg never copies a database in the middle
        of a write. It fails (and with it the job) when an app cannot be
        backed up; see `backup.allowStop`.
      '';
    };

    spec = mkOption {
      type = types.attrs;
      internal = true;
      readOnly = true;
      description = "The spec generated from these options (what `nixarr-units render` reads).";
    };

    units = mkOption {
      type = types.package;
      internal = true;
      readOnly = true;
      description = "The rendered units and manifest.";
    };
  }
  // lib.genAttrs nl.appNames (
    app:
    mkOption {
      type = types.submodule (appModule app);
      default = { };
      description = "${catalog.${app}.description} in a container (catalog app `${app}`).";
    }
  );
}
