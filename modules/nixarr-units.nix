# The NixOS module: services.nixarr-units.* → spec (JSON, in the store) →
# `nixarr-units render` at build time → units in systemd.packages.
#
# Why systemd.packages and not systemd.units.<name>.text: the units are the
# renderer's output, byte-identical to what the generator writes on hosts
# without NixOS. Copying their text into systemd.units would need that text
# at evaluation time (import from derivation). switch-to-configuration
# compares the files under /etc/systemd/system of the old and the new system,
# including those linked there from systemd.packages, so `nixos-rebuild
# switch` restarts exactly the containers whose unit changed (each unit
# carries its config hash, so an unchanged container keeps running). No
# restartTriggers are needed for that. NixOS ignores the `*.wants/`
# directories of packages, hence systemd.targets.<prefix>.wantedBy below.
# Runtime inputs that are not in the unit are not watched, except secrets
# given by sops-nix name: sops.secrets.<x>.restartUnits restarts the
# container (and with it its secret bridge, which is PartOf= it).
#
# Secrets: the spec carries only the path of each secret's file; the
# binary's secret bridge (<prefix>-<service>-secrets.service) delivers the value
# at start. No value passes through Nix: no sops template, no env file.
{
  config,
  lib,
  pkgs,
  options,
  ...
}:

let
  cfg = config.services.nixarr-units;
  nl = import ./lib.nix { inherit lib; };
  inherit (nl) catalog dropNulls;

  opt = "services.nixarr-units";
  # sops-nix's module is imported (this module itself declares only
  # sops.secrets, to add restartUnits to secrets declared elsewhere).
  hasSops = options ? sops && options.sops ? defaultSopsFile;
  sopsDeclared = name: hasSops && config.sops.secrets ? ${name};

  inherit (nl) reservedNames reservedSuffixes;

  unitOf = name: "${cfg.prefix}-${name}.service";

  # Directories the module creates: its own (owner and mode enforced) and
  # the user's (only created; see tmpfilesDir).
  ownDir = path: {
    inherit path;
    createOnly = false;
  };
  userDir = path: {
    inherit path;
    createOnly = true;
  };

  # A secret file's path variable when neither the container nor its
  # catalog app names another: the LinuxServer.io convention, as the binary.
  defaultFileEnv = "FILE__{name}";
  # The mode the binary picks when `mode` is null: always `file`.
  secretMode = s: if s.mode != null then s.mode else "file";
  # podman >= 5.3 hides type=env secrets from inspect (an unknown version is
  # the current podman, as in the binary).
  hidesEnv =
    cfg.backend == "podman" && (!(engine ? version) || lib.versionAtLeast engine.version "5.3");
  # Whether the value would be in the container's environment as `inspect`
  # shows it.
  exposedSecret = s: secretMode s == "envFile" || (secretMode s == "env" && !hidesEnv);

  # The source file of a secret. Without sops-nix, or for a secret sops-nix
  # does not declare, a `sopsSecret` fails an assertion (secretChecks); the
  # fallback only keeps evaluation going.
  secretSource =
    s:
    if s.sopsSecret != null then
      (if sopsDeclared s.sopsSecret then config.sops.secrets.${s.sopsSecret}.path else "/run/secrets/${s.sopsSecret}")
    else if s.file != null then
      toString s.file
    else
      null;

  # The spec's `secrets`: paths and delivery modes only, never a value.
  secretsSpec =
    secrets:
    if secrets == { } then
      null
    else
      lib.mapAttrs (
        _: s:
        dropNulls {
          file = secretSource s;
          inherit (s) mode podmanSecretType fileEnv;
          allowEnvironmentValue = if s.allowEnvironmentValue then true else null;
        }
      ) secrets;

  # Variables the binary sets from the catalog: a secret must not reuse them.
  presetEnvNames =
    preset:
    if preset == null then
      [ ]
    else
      [ "TZ" ]
      ++ lib.optionals (preset.linuxserver or false) [
        "PUID"
        "PGID"
        "UMASK"
      ]
      ++ lib.attrNames (preset.environment or { });

  normPort = p: {
    host = if p.host or null != null then p.host else p.container;
    inherit (p) container;
    protocol = p.protocol or "tcp";
    address = p.address or null;
  };

  # The native data directory where the nixpkgs module lets it move and the
  # catalog's (one path) cannot say it; null means the catalog's. nixpkgs'
  # Seerr (services.seerr, formerly services.jellyseerr, unit seerr.service)
  # keeps it in `configDir`: /var/lib/seerr/ from stateVersion 26.05 on,
  # /var/lib/jellyseerr/config (the catalog's) before. It runs with
  # DynamicUser, so the files live under /var/lib/private.
  nativeDataDir =
    app:
    if app == "seerr" && options ? services.seerr.configDir then
      privateStateDir config.services.seerr.configDir
    else
      null;
  privateStateDir =
    p:
    let
      dir = lib.removeSuffix "/" (toString p);
    in
    if lib.hasPrefix "/var/lib/" dir && !lib.hasPrefix "/var/lib/private/" dir then
      "/var/lib/private/${lib.removePrefix "/var/lib/" dir}"
    else
      dir;

  # Where a port without an address of its own is published: on every
  # address when the firewall is opened for it, else only on
  # `bindAddress` (loopback by default). The engines publish ports with
  # DNAT rules in the nat table, before the INPUT chain that the NixOS
  # firewall filters, so a port published on the LAN's address is reachable
  # from the LAN whatever the firewall says; not publishing it there is the
  # only way to keep it closed.
  withAddress =
    openFirewall: p:
    p
    // {
      address =
        if p.address != null then
          p.address
        else if openFirewall then
          null
        else
          cfg.bindAddress;
    };

  # Ports of a catalog app with its web port moved to `port`/`bindAddress`.
  appPorts =
    app: c:
    lib.imap0 (
      i: p:
      let
        n = normPort p;
      in
      if i == 0 then
        n
        // {
          host = c.port;
          address = if c.bindAddress != null then c.bindAddress else n.address;
        }
      else
        n
    ) catalog.${app}.ports;

  idOf =
    field: preset: c:
    if c.${field} != null then
      c.${field}
    else if (preset.${if field == "puid" then "uid" else "gid"} or null) != null then
      preset.${if field == "puid" then "uid" else "gid"}
    else
      cfg.defaults.${field};

  # A service's route through the proxy, for the spec (null: none).
  proxySpec = p: if p.subdomain == null && p.path == null then null else dropNulls p;

  # --- reverse proxy ----------------------------------------------------

  # Every proxied app: where it is served and where the proxy finds it (its
  # first tcp port, on loopback unless it is published on one address).
  routes = lib.concatMap (
    e:
    let
      p = e.service.proxy or null;
      port = lib.findFirst (q: (q.protocol or "tcp") == "tcp") null e.ports;
      address = if port == null then null else port.address or null;
      host = if address == null || address == "0.0.0.0" || address == "::" then "127.0.0.1" else address;
    in
    lib.optional (p != null && port != null) {
      inherit (e) name;
      vhost = if p ? subdomain then "${p.subdomain}.${cfg.proxy.domain}" else cfg.proxy.domain;
      location = p.path or "/";
      upstream = "${if lib.hasInfix ":" host then "[${host}]" else host}:${toString port.host}";
    }
  ) enabled;

  securityHeaders = [
    "X-Content-Type-Options nosniff"
    "X-Frame-Options SAMEORIGIN"
    "Referrer-Policy same-origin"
  ];

  nginxHosts = lib.mkMerge (
    map (r: {
      ${r.vhost} = {
        forceSSL = cfg.proxy.acme;
        enableACME = cfg.proxy.acme;
        extraConfig = "client_max_body_size 100m;";
        locations.${r.location} = {
          proxyPass = "http://${r.upstream}";
          proxyWebsockets = true;
          recommendedProxySettings = true;
          extraConfig = ''
            proxy_read_timeout 1h;
            proxy_send_timeout 1h;
            proxy_buffering off;
          ''
          + lib.concatMapStrings (h: "add_header ${h} always;\n") securityHeaders;
        };
      };
    }) routes
  );

  caddyHosts = lib.mapAttrs' (
    vhost: rs:
    lib.nameValuePair (if cfg.proxy.acme then vhost else "http://${vhost}") {
      extraConfig = ''
        request_body {
          max_size 100MB
        }
        header {
        ${lib.concatMapStrings (h: "  ${h}\n") securityHeaders}}
      ''
      + lib.concatMapStrings (
        r:
        let
          proxy = ''
            reverse_proxy ${r.upstream} {
                transport http {
                  read_timeout 1h
                  write_timeout 1h
                }
              }'';
        in
        if r.location == "/" then
          "handle {\n  ${proxy}\n}\n"
        else
          "@${r.name} path ${r.location} ${r.location}/*\nhandle @${r.name} {\n  ${proxy}\n}\n"
      ) rs;
    }
  ) (lib.groupBy (r: r.vhost) routes);

  # One record per container, whatever option set it came from.
  mkApp =
    kind: path: name: app: c:
    let
      preset = catalog.${app};
      ports = map (withAddress c.openFirewall) (appPorts app c);
      legacy = preset.legacy or null;
    in
    {
      inherit
        kind
        path
        name
        app
        ports
        ;
      inherit (c)
        enable
        vpn
        dependsOn
        secrets
        openFirewall
        environment
        ;
      labels = { };
      uid = idOf "puid" preset c;
      gid = idOf "pgid" preset c;
      fileEnv = preset.secretFileEnv or defaultFileEnv;
      catalogEnv = presetEnvNames preset;
      dirs = [ (ownDir "${cfg.stateDir}/${name}") ];
      native =
        if kind == "app" && c.migrateFrom == null && legacy != null then
          map (lib.removeSuffix ".service") legacy.units
        else
          [ ];
      checks = [ ];
      service = dropNulls {
        inherit app;
        inherit (c)
          image
          environment
          dependsOn
          vpn
          extraArgs
          puid
          pgid
          ;
        imageFile = if c.imageFile == null then null else toString c.imageFile;
        ports = map dropNulls ports;
        environmentFiles = c.environmentFiles;
        secrets = secretsSpec c.secrets;
        devices = if c.devices == [ ] then null else map dropNulls c.devices;
        proxy = proxySpec c.proxy;
        migration =
          if c.migrateFrom == null then
            null
          else
            dropNulls {
              legacyDataDir =
                if c.legacyDataDir != null then
                  c.legacyDataDir
                else if c.migrateFrom == "nixarr" then
                  legacy.nixarr.stateDir
                else
                  nativeDataDir app;
            };
      };
    };

  mkContainer =
    name: c:
    let
      path = "${opt}.containers.${name}";
      preset = if c.app != null then catalog.${c.app} else null;
      ports = map (withAddress c.openFirewall) (
        if c.ports != null then
          map normPort c.ports
        else if preset != null then
          map normPort preset.ports
        else
          [ ]
      );
      health =
        if c.health != null then
          (if c.health.enable then c.health else null)
        else if preset != null then
          preset.health or null
        else
          null;
      tcpPorts = map (p: p.container) (lib.filter (p: p.protocol == "tcp") ports);
      needsPort = health != null && ((health.http or null) != null && lib.hasPrefix "/" health.http || health.tcp or false);
      mountTargets = map (v: v.container) (if c.volumes != null then c.volumes else [ ]);
      legacy = if preset != null then preset.legacy or null else null;
    in
    {
      kind = "container";
      inherit path name ports;
      inherit (c)
        app
        enable
        vpn
        dependsOn
        secrets
        openFirewall
        environment
        labels
        ;
      uid = idOf "puid" (if preset != null then preset else { }) c;
      gid = idOf "pgid" (if preset != null then preset else { }) c;
      fileEnv =
        if c.secretFileEnv != null then
          c.secretFileEnv
        else if preset != null then
          preset.secretFileEnv or defaultFileEnv
        else
          defaultFileEnv;
      catalogEnv = presetEnvNames preset;
      dirs =
        if c.volumes != null then
          map (v: userDir v.host) (lib.filter (v: v.create) c.volumes)
        else if preset != null then
          [ (ownDir "${cfg.stateDir}/${name}") ]
        else
          [ ];
      native = [ ];
      checks = [
        {
          assertion = c.image != null || c.app != null;
          message = "${path}.image: missing; give the container image (e.g. \"docker.io/library/nginx:1.27\") or set `app` to a catalog app (${lib.concatStringsSep ", " nl.allAppNames}).";
        }
        {
          assertion = health == null || !((health.http or null) != null && (health.tcp or false));
          message = "${path}.health: `http` and `tcp` cannot be combined; choose one probe.";
        }
        {
          assertion = health == null || health.cmd or null != null || health.http or null != null || health.tcp or false;
          message = "${path}.health: has neither `cmd` nor a probe (`http` or `tcp`); give one, or set health.enable = false.";
        }
        {
          assertion = !needsPort || lib.elem (health.port or null) tcpPorts;
          message = "${path}.health.port: the probe needs a container port published over tcp in `ports` (published: ${
            lib.concatMapStringsSep ", " toString tcpPorts
          }); set health.port to one of them or publish it.";
        }
        {
          assertion = lib.length mountTargets == lib.length (lib.unique mountTargets);
          message = "${path}.volumes: a container path is mounted twice (${lib.concatStringsSep ", " mountTargets}); give each volume its own container path.";
        }
        {
          assertion =
            c.migration == null
            || legacy != null
            || (c.migration.legacyUnit != null && c.migration.legacyDataDir != null);
          message = "${path}.migration: without a catalog `app`, give legacyUnit and legacyDataDir.";
        }
        {
          assertion = c.migration == null || c.migration.targetDir != null || (preset != null && c.volumes == null);
          message = "${path}.migration.targetDir: missing; give the host directory the container keeps its config in.";
        }
      ]
      ++ lib.mapAttrsToList (k: _: {
        assertion = builtins.match "[^=[:space:]]+" k != null && !lib.hasPrefix nl.labelPrefix k;
        message = "${path}.labels.\"${k}\": label keys must be non-empty, without `=` or whitespace, and not start with `io.nixarr.` (set by nixarr-units).";
      }) c.labels;
      service = dropNulls {
        inherit (c)
          app
          description
          image
          environment
          dependsOn
          vpn
          cmd
          entrypoint
          user
          init
          capAdd
          extraArgs
          labels
          restart
          stopTimeout
          startTimeout
          puid
          pgid
          secretFileEnv
          ;
        imageFile = if c.imageFile == null then null else toString c.imageFile;
        proxy = proxySpec c.proxy;
        # The catalog's ports too, when they get an address here.
        ports = if c.ports == null && ports == [ ] then null else map dropNulls ports;
        volumes = if c.volumes == null then null else c.volumes;
        devices = if c.devices == null then null else map dropNulls c.devices;
        environmentFiles = c.environmentFiles;
        secrets = secretsSpec c.secrets;
        migration = if c.migration == null then null else dropNulls c.migration;
      }
      # `health` is tri-state: absent (catalog's), null (none), or a probe.
      // lib.optionalAttrs (c.health != null) {
        health = if c.health.enable then dropNulls (removeAttrs c.health [ "enable" ]) else null;
      };
    };

  vpnEntry =
    let
      v = cfg.vpn;
    in
    {
      kind = "vpn";
      path = "${opt}.vpn";
      name = "gluetun";
      app = "gluetun";
      inherit (v) enable secrets environment;
      vpn = false;
      dependsOn = [ ];
      openFirewall = false;
      labels = { };
      ports = map (withAddress false) (map normPort catalog.gluetun.ports);
      uid = cfg.defaults.puid;
      gid = cfg.defaults.pgid;
      fileEnv = catalog.gluetun.secretFileEnv or defaultFileEnv;
      catalogEnv = presetEnvNames catalog.gluetun;
      dirs = [ (ownDir "${cfg.stateDir}/gluetun") ];
      native = [ ];
      checks = [ ];
      service = dropNulls {
        app = "gluetun";
        inherit (v) image;
        imageFile = if v.imageFile == null then null else toString v.imageFile;
        environment = {
          VPN_SERVICE_PROVIDER = v.provider;
          VPN_TYPE = v.type;
        }
        // lib.optionalAttrs (v.serverCountries != [ ]) {
          SERVER_COUNTRIES = lib.concatStringsSep "," v.serverCountries;
        }
        // v.environment;
        environmentFiles = v.environmentFiles;
        secrets = secretsSpec v.secrets;
        ports = map dropNulls vpnEntry.ports;
      };
    };

  entries =
    lib.mapAttrsToList (app: _: mkApp "app" "${opt}.${app}" app app cfg.${app}) (lib.genAttrs nl.appNames (_: null))
    ++ lib.mapAttrsToList (name: c: mkApp "instance" "${opt}.instances.${name}" name c.app c) cfg.instances
    ++ lib.mapAttrsToList mkContainer cfg.containers
    ++ [ vpnEntry ];

  enabled = lib.filter (e: e.enable) entries;
  enabledNames = map (e: e.name) enabled;

  # The network is named after the prefix; its bridge is named here so that
  # the firewall below can open the engine's DNS on it.
  bridge = nl.bridgeName cfg.prefix;
  # podman names the bridge from 4.5 on (--interface-name).
  bridgeNamed = !(engine ? version) || lib.versionAtLeast engine.version "4.5";

  spec = {
    version = 1;
    inherit (cfg) backend prefix;
    engine = engine;
    network.interface = bridge;
    defaults = {
      inherit (cfg.defaults)
        puid
        pgid
        tz
        umask
        ;
    };
    paths = {
      inherit (cfg) stateDir dataDir;
    };
    services = lib.listToAttrs (map (e: lib.nameValuePair e.name e.service) enabled);
  }
  // lib.optionalAttrs (cfg.imageLock != null) {
    # A store path: the lock is an input of the units' derivation.
    imageLock = "${cfg.imageLock}";
  }
  // lib.optionalAttrs (cfg.profiles != { }) { inherit (cfg) profiles; }
  // lib.optionalAttrs cfg.proxy.enable {
    proxy = {
      inherit (cfg.proxy) domain acme;
    };
  }
  // lib.optionalAttrs (cfg.backup.schedule != null) {
    backup = {
      inherit (cfg.backup)
        schedule
        dir
        keep
        allowStop
        ;
    };
  }
  // lib.optionalAttrs (cfg.autoUpdate.services != [ ]) {
    autoUpdate = {
      inherit (cfg.autoUpdate) schedule services;
    };
  }
  // lib.optionalAttrs cfg.api.enable {
    # Token files by path only: sops-nix (or any tool) puts them there at
    # run time; the API's unit hands them over as credentials.
    api = dropNulls {
      enable = true;
      user = if apiAsUser then cfg.api.user else null;
      inherit (cfg.api)
        listen
        socket
        group
        tokenFile
        readTokenFile
        ;
    };
  }
  // lib.optionalAttrs cfg.reconcile.enable {
    reconcile = {
      inherit (cfg.reconcile) interval prune;
    };
  };

  # Images the lock pins (read at evaluation: the file as the user wrote it).
  lockedImages =
    if cfg.imageLock == null then
      { }
    else
      (builtins.fromJSON (builtins.readFile cfg.imageLock)).images or { };
  # A pinned service cannot also be updated in place: the lock is part of
  # the generation, so an update would be undone by the next switch.
  autoUpdateChecks = map (
    name:
    let
      svc = spec.services.${name} or null;
    in
    {
      assertion = svc != null && !(lockedImages ? ${svc.image or ""});
      message =
        if svc == null then
          "services.nixarr-units.autoUpdate.services: `${name}` is not an enabled service; name one of ${lib.concatStringsSep ", " enabledNames}."
        else
          "services.nixarr-units.autoUpdate.services: `${name}` runs ${svc.image}, which services.nixarr-units.imageLock pins: a NixOS generation pins its images, so an update in place would be undone by the next switch. Choose one: pin it (remove it from autoUpdate.services; update the lock with `nixarr-units update ${name} --lock ./images.lock.json` and rebuild), or auto-update it (remove its image from the lock).";
    }
  ) cfg.autoUpdate.services;

  enginePackage =
    if cfg.backend == "podman" then config.virtualisation.podman.package else config.virtualisation.docker.package;
  engineVersion = lib.getVersion enginePackage;
  engine = {
    path = "${enginePackage}/bin/${cfg.backend}";
  }
  // lib.optionalAttrs (builtins.match "[0-9].*" engineVersion != null) { version = engineVersion; };

  # The API as an unprivileged user, granted the stack's units by polkit:
  # the rule is `render`'s template (templates/api-polkit.rules), filled the
  # same way (tests/nix_eval.rs compares the two).
  apiAsUser = cfg.api.enable && cfg.api.user != "root";
  apiPolkitRule =
    lib.replaceStrings
      [ "{{ prefix }}" "{{ user }}" ]
      [ cfg.prefix cfg.api.user ]
      (builtins.readFile ../templates/api-polkit.rules);

  specFile = pkgs.writeText "${cfg.prefix}-spec.json" (builtins.toJSON spec);

  units =
    pkgs.runCommand "nixarr-units-${cfg.prefix}"
      {
        nativeBuildInputs = [ cfg.package ];
        preferLocalBuild = true;
        allowSubstitutes = false;
      }
      ''
        nixarr-units render --spec ${specFile} --out "$out" --self-exe ${lib.getExe cfg.package}
      '';

  # --- assertions -------------------------------------------------------

  proxyChecks = [
    {
      assertion = !cfg.proxy.enable || cfg.proxy.domain != null;
      message = "${opt}.proxy.domain: missing; give the domain the apps are served under (e.g. \"media.example.org\").";
    }
  ]
  ++ lib.concatMap (
    e:
    let
      p = e.service.proxy or null;
    in
    lib.optionals (p != null) [
      {
        assertion = cfg.proxy.enable;
        message = "${e.path}.proxy: ${opt}.proxy.enable is false; enable the proxy (and set proxy.domain) to serve ${e.name} behind it, or drop its proxy settings.";
      }
      {
        assertion = !(p ? subdomain && p ? path);
        message = "${e.path}.proxy: give `subdomain` or `path`, not both.";
      }
      {
        assertion = lib.any (q: (q.protocol or "tcp") == "tcp") e.ports;
        message = "${e.path}.proxy: the container publishes no tcp port for the proxy to reach; add one to `ports`.";
      }
    ]
  ) enabled;

  nameChecks = map (e: {
    assertion =
      builtins.match "[a-z][a-z0-9-]*" e.name != null
      && lib.stringLength e.name <= nl.limits.nameLength.max
      && !lib.elem e.name reservedNames
      && !lib.any (s: lib.hasSuffix s e.name) reservedSuffixes;
    message = "${e.path}: `${e.name}` is not a valid service name; use lowercase letters, digits and `-`, starting with a letter, at most ${toString nl.limits.nameLength.max} characters, not one of ${lib.concatStringsSep ", " reservedNames} and not ending in ${lib.concatStringsSep " or " reservedSuffixes}.";
  }) enabled;

  duplicateChecks =
    let
      byName = lib.groupBy (e: e.name) enabled;
    in
    lib.mapAttrsToList (n: es: {
      assertion = lib.length es == 1;
      message = "Container `${n}` is defined more than once: ${lib.concatMapStringsSep " and " (e: e.path) es}; rename one (instances and containers are named by their attribute; `gluetun` is the VPN's).";
    }) byName;

  envChecks = lib.concatMap (
    e:
    map (k: {
      assertion = builtins.match "[A-Za-z_][A-Za-z0-9_]*" k != null;
      message = "${e.path}: `${k}` is not a valid environment variable name; use letters, digits and `_`, not starting with a digit.";
    }) (lib.attrNames e.environment ++ lib.attrNames e.secrets)
  ) enabled;

  # The native service of a catalog app still running beside its
  # container: enabled through its NixOS option (services.<n>.enable), or
  # defined as a plain systemd unit, as nixarr does for some apps (bazarr,
  # jellyseerr) without that option. The catalog's legacy.units name them.
  nativeChecks = lib.concatMap (
    e:
    map (
      n:
      let
        byOption = lib.attrByPath [ "services" n "enable" ] false config;
        unit = config.systemd.services.${n} or null;
        byUnit = unit != null && (unit.enable or true);
        clash =
          if byOption then
            "${e.path}.enable and services.${n}.enable are both true"
          else
            "${e.path}.enable is true and the native unit systemd.services.${n} is enabled too (defined by another module, e.g. nixarr)";
      in
      {
        assertion = !(byOption || byUnit);
        message = ''
          ${clash}: the native service and the container would serve the same port (${toString (builtins.head e.ports).host}) and manage the same data.
          To move to the container, set ${e.path}.migrateFrom = "nixpkgs" (or "nixarr"), switch, run `nixarr-migrate migrate ${e.name}`, then disable the native service${
            lib.optionalString (!byOption) " (for nixarr: nixarr.${n}.enable = false)"
          }.
          Otherwise disable one of the two.'';
      }
    ) e.native
  ) enabled;

  portRefs = lib.concatMap (
    e:
    lib.imap0 (
      i: p:
      p
      // {
        where =
          if e.kind == "app" || e.kind == "instance" then
            (if i == 0 then "${e.path}.port" else "${e.path} (catalog port ${toString p.container}/${p.protocol})")
          else if e.kind == "vpn" then
            "${e.path} (Gluetun's port ${toString p.container})"
          else
            "${e.path}.ports[${toString i}]";
      }
    ) e.ports
  ) enabled;
  unspecified = a: a == null || a == "0.0.0.0" || a == "::";
  overlap =
    a: b:
    a.host == b.host && a.protocol == b.protocol && (unspecified a.address || unspecified b.address || a.address == b.address);
  portClashes = lib.concatLists (
    lib.imap0 (i: a: map (b: { inherit a b; }) (lib.filter (overlap a) (lib.drop (i + 1) portRefs))) portRefs
  );
  portChecks = map (c: {
    assertion = false;
    message = "${c.a.where} and ${c.b.where} both use host port ${toString c.a.host}/${c.a.protocol}; give one of them another host port.";
  }) portClashes;

  vpnChecks = map (e: {
    assertion = !e.vpn || cfg.vpn.enable;
    message = "${e.path}.vpn is true but services.nixarr-units.vpn.enable is false: enable the VPN (services.nixarr-units.vpn = { enable = true; provider = \"…\"; secrets.WIREGUARD_PRIVATE_KEY.sopsSecret = \"…\"; }) or set ${e.path}.vpn = false.";
  }) enabled;

  # The binary's secret rules (resolve_secrets in src/resolve/secrets.rs), checked
  # here so that a mistake names the option rather than failing the build.
  secretChecks = lib.concatMap (
    e:
    let
      userEnv = lib.attrNames e.environment;
      # Set by nixarr-units: TZ, PUID, … and the catalog's (the binary's
      # merged environment), and the VPN block's provider settings.
      moduleEnv = lib.unique (
        e.catalogEnv ++ lib.subtractLists userEnv (lib.attrNames (e.service.environment or { }))
      );
      effectiveMode = secretMode;
      exposed = exposedSecret;
      pathVar =
        name: s:
        if s.fileEnv != null then s.fileEnv else lib.replaceStrings [ "{name}" ] [ name ] e.fileEnv;
      # The binary mounts podman secrets unless told `env`.
      isMount =
        s: cfg.backend == "podman" && effectiveMode s == "podmanSecret" && s.podmanSecretType != "env";
      mounted = lib.filterAttrs (_: isMount) e.secrets;
      fileMode = lib.filterAttrs (_: s: effectiveMode s == "file") e.secrets;
      perSecret = lib.concatLists (
        lib.mapAttrsToList (
          name: s:
          let
            sp = "${e.path}.secrets.${name}";
            # The variables the bridge sets: the secret's own, and for `file`
            # the one carrying its path (FILE__<name>).
            vars = [
              name
            ]
            ++ lib.optional (effectiveMode s == "file") (pathVar name s);
          in
          [
            {
              assertion = s.sopsSecret != null || s.file != null;
              message = "${sp}: gives no source; set ${sp}.sopsSecret = \"<sops-nix secret name>\" or ${sp}.file = \"/run/…\" (e.g. config.age.secrets.<name>.path for agenix).";
            }
            {
              assertion = s.sopsSecret == null || s.file == null;
              message = "${sp}: sets both sopsSecret and file; keep one (sopsSecret = \"${s.sopsSecret}\" already means the file ${secretSource s}).";
            }
            {
              assertion = s.sopsSecret == null || hasSops;
              message = "${sp}.sopsSecret = \"${toString s.sopsSecret}\" needs sops-nix, whose NixOS module is not imported: add sops-nix.nixosModules.sops to your imports, or give the decrypted file's path instead: ${sp}.file = \"/run/…\" (agenix: config.age.secrets.<name>.path).";
            }
            {
              assertion = s.sopsSecret == null || !hasSops || sopsDeclared s.sopsSecret;
              message = "${sp}.sopsSecret = \"${toString s.sopsSecret}\": sops-nix has no secret of that name. Declare it where you keep your sops secrets (sops.secrets.\"${toString s.sopsSecret}\" = { }; with its sopsFile, or sops.defaultSopsFile), or correct the name (declared: ${
                lib.concatStringsSep ", " (lib.attrNames (if hasSops then config.sops.secrets else { }))
              }). nixarr-units only reads the secret's path and adds its unit to the secret's restartUnits.";
            }
            {
              assertion = s.mode != "podmanSecret" || cfg.backend == "podman";
              message = "${sp}.mode = \"podmanSecret\" needs the podman backend, but services.nixarr-units.backend is \"${cfg.backend}\"; use mode = \"file\" (the default, or null) with Docker.";
            }
            {
              assertion =
                s.podmanSecretType != "env"
                || cfg.backend != "podman"
                || !(engine ? version)
                || lib.versionAtLeast engine.version "5.3";
              message = "${sp}.podmanSecretType = \"env\": podman ${engine.version or "?"} shows the values of env secrets in `podman inspect` (fixed in podman 5.3); use podmanSecretType = \"mount\" (the default) or mode = \"file\".";
            }
            {
              assertion = !(exposed s) || s.allowEnvironmentValue;
              message = "${sp}.mode = \"${effectiveMode s}\" would put the value of ${name} in the container's environment, where `${cfg.backend} inspect` shows it; drop mode to deliver it as the file /run/secrets/${name} (its path in ${pathVar name s}), or set ${sp}.allowEnvironmentValue = true to accept that.";
            }
            {
              assertion = !s.allowEnvironmentValue || exposed s;
              message = "${sp}.allowEnvironmentValue only applies to mode = \"env\" on Docker or podman before 5.3, or to mode = \"envFile\": nothing here puts the value where `inspect` shows it; remove it.";
            }
            {
              assertion = s.fileEnv == null || effectiveMode s == "file";
              message = "${sp}.fileEnv only applies to mode = \"file\" (the default); remove it or ${sp}.mode.";
            }
            {
              assertion = s.podmanSecretType == null || s.mode == "podmanSecret";
              message = "${sp}.podmanSecretType only applies to mode = \"podmanSecret\" (the mode is \"${effectiveMode s}\"); remove it or set ${sp}.mode = \"podmanSecret\".";
            }
          ]
          ++ map (
            var:
            let
              byUser = lib.elem var userEnv;
            in
            {
              assertion = !(byUser || lib.elem var moduleEnv);
              message =
                "${sp}: `${var}` is also set "
                + (
                  if byUser then
                    "in ${e.path}.environment; a value belongs in one place: remove ${e.path}.environment.${var}."
                  else
                    "by nixarr-units for this container (${lib.concatStringsSep ", " moduleEnv}); name the secret after the variable the app reads, or drop it."
                );
            }
          ) vars
        ) e.secrets
      );
    in
    perSecret
    ++ [
      {
        assertion = mounted == { } || fileMode == { };
        message = "${e.path}.secrets: ${lib.concatStringsSep ", " (lib.attrNames mounted)} (podmanSecretType = \"mount\") and the `file` secrets ${lib.concatStringsSep ", " (lib.attrNames fileMode)} would all use /run/secrets in the container; give the podman secrets podmanSecretType = \"env\", or use mode = \"file\" for all.";
      }
    ]
  ) enabled;

  dependencyChecks = lib.concatMap (
    e:
    map (d: {
      assertion = lib.elem d enabledNames;
      message = "${e.path}.dependsOn: `${d}` is not an enabled container (enabled: ${lib.concatStringsSep ", " (lib.unique enabledNames)}); enable it or remove the dependency.";
    }) e.dependsOn
  ) enabled;

  sorted = lib.toposort (a: b: lib.elem a.name b.dependsOn) enabled;
  cycleChecks = [
    {
      assertion = sorted ? result;
      message = "${opt}: dependency cycle among ${
        lib.concatStringsSep ", " (lib.unique (map (e: e.path) (sorted.cycle or [ ] ++ sorted.loops or [ ])))
      }; remove one of their dependsOn entries.";
    }
  ];

  # --- host side: firewall, directories, secrets ------------------------

  loopback = a: a != null && (lib.hasPrefix "127." a || a == "::1");
  firewallPorts =
    proto:
    lib.unique (
      lib.concatMap (
        e: map (p: p.host) (lib.filter (p: p.protocol == proto && !loopback p.address) (if e.openFirewall then e.ports else [ ]))
      ) enabled
    );

  # systemd-tmpfiles applies a `d` line's mode and owner to an existing
  # directory at every boot and switch. That is right for a container's own
  # config directory (its owner must follow the container's uid), wrong for
  # the trees that are the user's to manage (stateDir, dataDir, the host
  # side of `create` volumes): there a `:` before mode, user and group
  # makes them apply only when the directory is created, so a later chown
  # or chmod of the user's stays.
  tmpfilesDir =
    mode: user: group: d:
    let
      keep = lib.optionalString d.createOnly ":";
    in
    "d ${nl.tmpfilesPath d.path} ${keep}${mode} ${keep}${toString user} ${keep}${toString group} -";

  tmpfilesRules = [
    (tmpfilesDir "0755" "root" "root" (userDir cfg.stateDir))
    (tmpfilesDir "2775" "root" cfg.group (userDir cfg.dataDir))
  ]
  ++ lib.concatMap (e: map (tmpfilesDir "0750" e.uid e.gid) e.dirs) enabled;

  # --- the ids the containers run as -----------------------------------

  # NixOS gives system users and groups without a fixed id one from 400-999
  # (counting down from 999), and normal users one from 1000 up. A
  # container's uid in 400-999 is therefore declared as a system user here,
  # so that NixOS never hands it to another account; ids below 400 are
  # NixOS's static ones (a puid matching a native service's is deliberate,
  # to keep file ownership on migration), and ids from 1000 up are left
  # alone: declaring one could renumber an existing human user, whose id
  # NixOS remembers but does not fix.
  autoRange = id: id >= 400 && id <= 999;
  byUid = lib.groupBy (e: toString e.uid) enabled;
  userName =
    uid: es:
    if uid == toString cfg.defaults.puid then
      cfg.prefix
    else
      "${cfg.prefix}-${builtins.head (lib.sort lib.lessThan (map (e: e.name) es))}";
  declaredUsers = lib.mapAttrs' (uid: es: lib.nameValuePair (userName uid es) (lib.toInt uid)) (
    lib.filterAttrs (uid: _: autoRange (lib.toInt uid)) byUid
  );
  declaredGroups = lib.filter (gid: autoRange gid && gid != cfg.defaults.pgid) (
    lib.unique (map (e: e.gid) enabled)
  );

  otherUsers = lib.filterAttrs (n: _: !(declaredUsers ? ${n})) config.users.users;
  uidChecks =
    lib.optionals cfg.createUsers (
      lib.mapAttrsToList (name: uid: {
        assertion = lib.all (u: (u.uid or null) != uid) (lib.attrValues otherUsers);
        message = "services.nixarr-units: containers run as uid ${toString uid} (${
          lib.concatMapStringsSep ", " (e: e.path) byUid.${toString uid}
        }), declared as the system user users.users.${name}, but users.users.${
          lib.concatStringsSep ", " (lib.attrNames (lib.filterAttrs (_: u: (u.uid or null) == uid) otherUsers))
        } has that uid too. Choose another services.nixarr-units.defaults.puid (or the container's puid), or set services.nixarr-units.createUsers = false to run them as that user.";
      }) declaredUsers
    );
  # A container whose uid is a declared human user's (often seerr's fixed
  # 1000): allowed (sharing files with your own user may be what you
  # want), but said.
  uidWarnings = lib.concatLists (
    lib.mapAttrsToList (
      uid: es:
      let
        humans = lib.attrNames (
          lib.filterAttrs (_: u: (u.isNormalUser or false) && toString (u.uid or "") == uid) config.users.users
        );
      in
      lib.optional (humans != [ ])
        "${lib.concatMapStringsSep ", " (e: e.path) es} run as uid ${uid}, which is users.users.${builtins.head humans}'s: that user can read and change their data in ${cfg.stateDir}. Give them another puid if this is not what you want (Seerr's image runs as 1000 whatever PUID says)."
    ) byUid
  );

  # sops-nix secret name → the units that use it (restarted when it changes).
  sopsRestarts = lib.foldAttrs (a: b: a ++ b) [ ] (
    lib.concatMap (
      e:
      lib.mapAttrsToList (_: s: { ${s.sopsSecret} = [ (unitOf e.name) ]; }) (
        lib.filterAttrs (_: s: s.sopsSecret != null) e.secrets
      )
    ) enabled
  );
in
{
  imports = [ ./options.nix ];

  # A changed sops secret restarts the containers that use it. This extends
  # the submodule of every sops.secrets.<name> declared elsewhere (by the
  # user, with its sopsFile): it adds to restartUnits and never declares a
  # secret itself (a secret sops-nix does not know fails an assertion
  # instead, naming the option). Only the type is given here, so that this
  # merges with sops-nix's own declaration of sops.secrets.
  options.sops.secrets = lib.mkOption {
    type = lib.types.attrsOf (
      lib.types.submodule (
        { name, ... }:
        {
          config = lib.mkIf (cfg.enable && sopsRestarts ? ${name}) {
            restartUnits = sopsRestarts.${name};
          };
        }
      )
    );
  };

  config = lib.mkIf cfg.enable (
    lib.mkMerge [
      {
        services.nixarr-units = {
          inherit spec units;
        };

        # render's warning, as a build warning: acknowledged exposures.
        warnings = lib.concatMap (
          e:
          lib.mapAttrsToList (
            name: _:
            "${e.path}.secrets.${name}: the value is delivered as an environment variable, which `${cfg.backend} inspect` shows to anyone allowed to run it (allowEnvironmentValue = true); drop mode for the default file delivery."
          ) (lib.filterAttrs (_: s: exposedSecret s && s.allowEnvironmentValue) e.secrets)
        ) enabled
        ++ uidWarnings;

        assertions =
          proxyChecks
          ++ nameChecks
          ++ duplicateChecks
          ++ envChecks
          ++ nativeChecks
          ++ portChecks
          ++ vpnChecks
          ++ secretChecks
          ++ dependencyChecks
          ++ cycleChecks
          ++ uidChecks
          ++ autoUpdateChecks
          ++ lib.concatMap (e: e.checks) enabled;

        virtualisation.podman.enable = lib.mkIf (cfg.backend == "podman") true;
        virtualisation.docker.enable = lib.mkIf (cfg.backend == "docker") true;

        environment.systemPackages = [ cfg.package ];
        environment.etc."nixarr-units/manifest.json".source = "${units}/share/nixarr-units/manifest.json";

        systemd.packages = [ units ];
        systemd.targets.${cfg.prefix}.wantedBy = [ "multi-user.target" ];
        systemd.tmpfiles.rules = tmpfilesRules;

        users.groups = {
          ${cfg.group}.gid = lib.mkDefault cfg.defaults.pgid;
        }
        // lib.optionalAttrs cfg.createUsers (
          lib.listToAttrs (map (gid: lib.nameValuePair "${cfg.prefix}-${toString gid}" { inherit gid; }) declaredGroups)
        );
        users.users = lib.mkIf cfg.createUsers (
          lib.mapAttrs (name: uid: {
            inherit uid;
            isSystemUser = true;
            group = cfg.group;
            description = "nixarr-units containers (uid ${toString uid})";
          }) declaredUsers
        );

        networking.firewall.allowedTCPPorts =
          firewallPorts "tcp"
          ++ lib.optionals (cfg.proxy.enable && cfg.proxy.openFirewall) (
            [ 80 ] ++ lib.optional cfg.proxy.acme 443
          );
        networking.firewall.allowedUDPPorts = firewallPorts "udp";

        services.nginx = lib.mkIf (cfg.proxy.enable && cfg.proxy.provider == "nginx") {
          enable = true;
          virtualHosts = nginxHosts;
        };
        services.caddy = lib.mkIf (cfg.proxy.enable && cfg.proxy.provider == "caddy") {
          enable = true;
          virtualHosts = caddyHosts;
        };
        # Containers resolve each other (and the host's names) through
        # aardvark-dns, which podman runs on the stack network's bridge;
        # NixOS opens port 53 only on podman0, the default network's. Docker
        # needs nothing: its DNS server lives in each container's namespace.
        networking.firewall.interfaces = lib.mkIf (cfg.backend == "podman" && bridgeNamed) {
          ${bridge} = {
            allowedUDPPorts = [ 53 ];
            allowedTCPPorts = [ 53 ];
          };
        };
      }
      (lib.mkIf apiAsUser {
        security.polkit.enable = true;
        security.polkit.extraConfig = apiPolkitRule;
      })
      (lib.mkIf (apiAsUser && cfg.api.user == options.services.nixarr-units.api.user.default) {
        users.users.${cfg.api.user} = {
          isSystemUser = true;
          group = cfg.api.user;
          extraGroups = [ "systemd-journal" ];
          description = "nixarr-units control API (${cfg.prefix} stack)";
        };
        users.groups.${cfg.api.user} = { };
      })
    ]
  );
}
