# What NixOS would install for one end-to-end scenario of the module
# (tests/nix/e2e/<name>.nix), as JSON, for the end-to-end mode that
# configures a machine from the evaluated configuration (tests/e2e/nixos.rs,
# which applies it with tests/e2e/harness/nixos.rs). Evaluated like
# tests/nix/eval.nix: nixpkgs' lib, the stubs of tests/nix/stubs.nix, the module's non-flake entry.
#
#   nix-instantiate --eval --strict --json tests/nix/export.nix \
#     --arg nixpkgsLib "$NIXPKGS_LIB" --argstr scenario firewall \
#     --argstr prefix e1p0a1b --argstr backend podman --argstr engineVersion 4.3.1 \
#     --argstr image localhost/nixarr-fake-app:test --argstr variant default
#
# engineVersion: the version of the engine the machine really runs, so the
# module renders for it as it would for that package on NixOS (the engine's
# package is a stand-in whose outPath the machine links to its /usr).
#
# Nothing is built: the units derivation is exported as its build script
# (`units.script`) together with the files it reads (the spec), and the test
# runs that script with this source tree's binary, as the derivation would.
{
  nixpkgsLib,
  scenario,
  prefix,
  backend,
  engineVersion,
  image,
  variant ? "default",
  # An image archive in the machine, for scenarios that load their image.
  imageFile ? null,
}:

let
  lib = import nixpkgsLib;
  stubPkgs = import ./stub-pkgs.nix { inherit lib; };
  file = ./e2e + "/${scenario}.nix";
  s = import file {
    inherit
      lib
      prefix
      backend
      image
      variant
      imageFile
      ;
  };
  engine = stubPkgs.fakeDrv "${backend}-${engineVersion}" { version = engineVersion; };
  evaluated = lib.evalModules {
    modules = [
      (import ./stubs.nix { withSops = false; })
      ../../modules
      {
        services.nixarr-units = {
          enable = true;
          inherit prefix backend;
        };
        virtualisation.podman.package = engine;
        virtualisation.docker.package = engine;
      }
      s.config
    ];
  };
  config = evaluated.config;
  cfg = config.services.nixarr-units;
  failed = map (a: a.message) (lib.filter (a: !a.assertion) config.assertions);
  fw = config.networking.firewall;
  ports = f: {
    allowedTCPPorts = f.allowedTCPPorts or [ ];
    allowedUDPPorts = f.allowedUDPPorts or [ ];
    allowedTCPPortRanges = f.allowedTCPPortRanges or [ ];
    allowedUDPPortRanges = f.allowedUDPPortRanges or [ ];
  };
  # The file the units derivation reads: the module's `pkgs.writeText` of
  # the spec (the stub's writeText is a pure function of name and text, so
  # this is the very path in `units.script`).
  specFile = stubPkgs.writeText "${cfg.prefix}-spec.json" (builtins.toJSON cfg.spec);
  # (An attribute set with `outPath` would become that string in JSON.)
  drv = d: {
    inherit (d) name;
    path = d.outPath;
    script = d.script or null;
  };
in
assert lib.assertMsg (failed == [ ])
  "tests/nix/e2e/${scenario}.nix: failed assertions:\n${lib.concatStringsSep "\n" failed}";
{
  description = s.description;
  # Files the derivations read (the units' build script reads the spec).
  files = {
    ${specFile.outPath} = specFile.text;
  };
  package.path = cfg.package.outPath;
  engine.path = engine.outPath;
  systemdPackages = map drv config.systemd.packages;
  targets = lib.mapAttrs (_: t: { inherit (t) wantedBy; }) config.systemd.targets;
  etc = lib.mapAttrs (_: e: { inherit (e) source; }) config.environment.etc;
  tmpfiles = config.systemd.tmpfiles.rules;
  users = {
    users = config.users.users;
    groups = lib.mapAttrs (_: g: { gid = g.gid or null; }) config.users.groups;
  };
  # NixOS's defaults where the stubs declare no option.
  firewall = {
    enable = fw.enable or true;
    allowPing = fw.allowPing or true;
    rejectPackets = fw.rejectPackets or false;
    trustedInterfaces = fw.trustedInterfaces or [ ];
    checkReversePath = fw.checkReversePath or true;
    interfaces = lib.mapAttrs (_: ports) (fw.interfaces or { });
  }
  // ports fw;
}
