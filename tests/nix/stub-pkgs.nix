# Test-only stand-in for the parts of nixpkgs that the module, the flake and
# nix/package.nix use: fake derivations (enough for string interpolation,
# lib.getExe and types.package; never built) and a callPackage that fills a
# function's arguments from this set.
{ lib }:

let
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
in
lib.fix (self: {
  inherit lib fakeDrv;
  stdenv = {
    hostPlatform.system = "x86_64-linux";
    buildPlatform.canExecute = _: true;
  };
  installShellFiles = fakeDrv "install-shell-files" { };
  nixarr-units = fakeDrv "nixarr-units-0.1.0" {
    pname = "nixarr-units";
    version = "0.1.0";
    meta.mainProgram = "nixarr-units";
  };
  podman = fakeDrv "podman-5.4.2" { version = "5.4.2"; };
  docker = fakeDrv "docker-27.5.1" { version = "27.5.1"; };
  systemd = fakeDrv "systemd-257.6" { version = "257.6"; };
  skopeo = fakeDrv "skopeo-1.18.0" { version = "1.18.0"; };
  writeText = name: text: fakeDrv name { inherit text; };
  runCommand = name: env: script: fakeDrv name { inherit env script; };
  # What nix/package.nix gets: a derivation named after Cargo.toml, marked
  # so that tests can tell it was built from this source tree.
  rustPlatform.buildRustPackage =
    attrs:
    fakeDrv "${attrs.pname}-${attrs.version}" {
      inherit (attrs) pname version meta;
      builtFromSource = true;
    };
  callPackage =
    fn: args:
    let
      f = if lib.isFunction fn then fn else import fn;
    in
    f (builtins.intersectAttrs (lib.functionArgs f) self // args);
})
