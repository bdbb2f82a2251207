# Types and helpers shared by the NixOS module, its documentation generator
# and its tests. Pure: needs nixpkgs' lib only.
#
# The types mirror what `nixarr-units validate` accepts (src/resolve/), so
# that a wrong value fails at evaluation with the option's path rather than
# later, in the build that renders the units.
{ lib }:

let
  inherit (lib) types;

  # A string type checked by a POSIX regular expression, with a readable
  # description for error messages and the option documentation.
  matching =
    regex: description:
    (types.strMatching regex)
    // {
      inherit description;
      descriptionClass = "noun";
    };

  # Catalog data: one JSON file per app, the very files the binary embeds.
  catalogDir = ./catalog;
  catalog = lib.mapAttrs' (
    file: _:
    lib.nameValuePair (lib.removeSuffix ".json" file) (
      builtins.fromJSON (builtins.readFile (catalogDir + "/${file}"))
    )
  ) (lib.filterAttrs (n: t: t == "regular" && lib.hasSuffix ".json" n) (builtins.readDir catalogDir));

  ipv4Octets =
    s:
    let
      m = builtins.match "([0-9]{1,3})\\.([0-9]{1,3})\\.([0-9]{1,3})\\.([0-9]{1,3})" s;
    in
    m != null && lib.all (o: lib.toInt o <= 255 && (o == "0" || !lib.hasPrefix "0" o)) m;

  # IPv6: hex groups separated by `:`, at most one `::`, optionally ending in
  # an IPv4 address. Loose but it keeps typos out; the binary checks exactly.
  ipv6Like =
    s:
    builtins.match "[0-9a-fA-F:.]+" s != null
    && lib.hasInfix ":" s
    && builtins.length (lib.splitString "::" s) <= 2
    && !(lib.hasInfix ":::" s);
in
rec {
  inherit catalog;

  /** Apps that get their own option set (Gluetun is the `vpn` block). */
  appNames = lib.filter (n: n != "gluetun") (lib.attrNames catalog);

  /** Every catalog app, for `containers.<name>.app`. */
  allAppNames = lib.attrNames catalog;

  # The web (first) port of a catalog app.
  webPort = app: builtins.head catalog.${app}.ports;

  # Numeric limits the binary enforces too (src/limits.rs), and the names
  # it keeps for the stack's own units (src/naming.rs derives them from the
  # unit names). tests/nix_eval.rs compares both sides, so neither changes
  # alone.
  limits = {
    id = {
      min = 0;
      max = 4294967294;
    };
    port = {
      min = 1;
      max = 65535;
    };
    stopTimeout = {
      min = 1;
      max = 3600;
    };
    startTimeout = {
      min = 10;
      max = 86400;
    };
    healthRetries = {
      min = 1;
      max = 100;
    };
    httpStatus = {
      min = 100;
      max = 599;
    };
    nameLength = {
      min = 1;
      max = 48;
    };
    prefixLength = {
      min = 1;
      max = 32;
    };
    interfaceLength = {
      min = 1;
      max = 15;
    };
    umaskDigits = {
      min = 3;
      max = 4;
    };
    backupKeep = {
      min = 1;
      max = 1000;
    };
  };

  reservedNames = [
    "network"
    "health"
    "backup"
    "reconcile"
    "migrate"
    "update"
    "api"
  ];

  reservedSuffixes = [ "-secrets" ];

  labelPrefix = "io.nixarr.";

  types' = rec {
    # An integer within one of the `limits`.
    between = limit: types.ints.between limits.${limit}.min limits.${limit}.max;

    line = matching "[^\n\r]*" "string without newlines";

    text = matching "[^[:cntrl:]]*[^[:cntrl:]\\\\]" "single-line text not ending in a backslash";

    absolutePath = matching "/[^\n\r]*" "absolute path";

    # A bind-mount side: the engines' --volume syntax cannot carry `:` or `,`.
    mountPath = matching "/[^:,\n\r]*" "absolute path without `:` or `,`";

    name =
      let
        max = toString limits.nameLength.max;
        rest = toString (limits.nameLength.max - 1);
      in
      matching "[a-z][a-z0-9-]{0,${rest}}" "service name (lowercase letters, digits, `-`; starts with a letter; at most ${max} characters)";

    prefix =
      let
        max = toString limits.prefixLength.max;
        rest = toString (limits.prefixLength.max - 1);
      in
      matching "[a-z][a-z0-9-]{0,${rest}}" "prefix (lowercase letters, digits, `-`; starts with a letter; at most ${max} characters)";

    image = matching "[^[:space:]-][^[:space:]]*" "container image reference";

    envName = matching "[A-Za-z_][A-Za-z0-9_]*" "environment variable name";

    timeZone = matching "[^[:space:]]+" "time zone name";

    umask =
      matching "[0-7]{${toString limits.umaskDigits.min},${toString limits.umaskDigits.max}}"
        "octal umask";

    duration = matching "([0-9]+(h|m|s|ms))+|0" "duration (Go syntax: 30s, 2m, 1m30s, 500ms)";

    capability = matching "[A-Za-z0-9_]+" "capability name";

    labelKey = types.addCheck (matching "[^=[:space:]]+" "label key") (k: !lib.hasPrefix labelPrefix k) // {
      description = "label key (no `=` or whitespace, not starting with `io.nixarr.`)";
    };

    id = between "id";

    port = between "port";

    ipAddress =
      types.addCheck types.str (s: ipv4Octets s || ipv6Like s)
      // {
        description = "IP address";
        descriptionClass = "noun";
      };

    # A device node's path: absolute, written the one way (no `.` or `..`
    # component, no `//`, no trailing `/`), without the `:` that separates
    # the parts of `--device`.
    devicePath =
      types.addCheck (matching "(/[^/:\n\r]+)+" "absolute path without `:`, `.` or `..` components") (
        p:
        let
          parts = lib.splitString "/" p;
        in
        !lib.elem "." parts && !lib.elem ".." parts
      );

    devicePermissions = types.addCheck (matching "[rwm]{1,3}" "device permissions (letters from r, w and m, each at most once)") (
      s:
      let
        letters = lib.stringToCharacters s;
      in
      lib.unique letters == letters
    );

    # A host device given to a container (`--device`): the engines'
    # `HOST[:CONTAINER[:PERMISSIONS]]` string or its parts by name.
    device =
      let
        fromString =
          s:
          let
            parts = lib.splitString ":" s;
            at = i: if lib.length parts > i then lib.elemAt parts i else null;
          in
          {
            host = at 0;
            container = at 1;
            permissions = if lib.length parts > 2 then lib.concatStringsSep ":" (lib.drop 2 parts) else null;
          };
      in
      types.coercedTo (matching "/[^\n\r]*" "`HOST[:CONTAINER[:PERMISSIONS]]`") fromString (
        types.submodule {
          options = {
            host = lib.mkOption {
              type = devicePath;
              example = "/dev/dri/renderD128";
              description = "The device node on the host.";
            };
            container = lib.mkOption {
              type = types.nullOr devicePath;
              default = null;
              example = "/dev/dri/renderD128";
              description = "Where the container sees the device; null means the host path.";
            };
            permissions = lib.mkOption {
              type = types.nullOr devicePermissions;
              default = null;
              example = "rw";
              description = "What the container may do with the device: letters from `r` (read), `w` (write) and `m` (mknod); null means all three, the engines' default.";
            };
          };
        }
      );

    # Where a secret's value lives on the host. A string or a path literal
    # (never interpolated, so never copied into the store); not a store path,
    # since the store is world-readable.
    secretPath =
      types.addCheck types.path (
        p:
        let
          s = toString p;
        in
        builtins.match "/[^\n\r]*" s != null && !lib.hasPrefix "${builtins.storeDir}/" s
      )
      // {
        description = "absolute path outside the Nix store";
        descriptionClass = "noun";
      };

    secretFileEnv = matching "([A-Za-z_][A-Za-z0-9_]*)?[{]name[}][A-Za-z0-9_]*" "variable name pattern containing `{name}` (e.g. `FILE__{name}`)";

    httpProbe = matching "(/|https?://)[^\n\r]*" "path on the published port (`/ping`) or URL (`http://…`)";
  };

  # The bridge of the stack's network: `br-<network>`, or when longer than
  # the kernel's 15 characters, `br-` + 7 characters + `-` + 4 hex digits
  # of its sha256 (the binary's default_interface in src/resolve/mod.rs).
  bridgeName =
    network:
    let
      full = "br-${network}";
    in
    if lib.stringLength full <= limits.interfaceLength.max then
      full
    else
      "br-${lib.substring 0 7 network}-${lib.substring 0 4 (builtins.hashString "sha256" network)}";

  # Escape a path for a systemd.tmpfiles line (whitespace and `%`).
  tmpfilesPath = p: lib.replaceStrings [ "%" " " "\t" "\\" ] [ "%%" "\\x20" "\\x09" "\\\\" ] p;

  # Drop attributes whose value is null (optional spec keys left out).
  dropNulls = lib.filterAttrs (_: v: v != null);
}
