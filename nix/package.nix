# The nixarr-units binary. Its own tests run in the check phase; those that
# need root, systemd, podman, docker or nix-instantiate skip themselves in
# the build sandbox (they print SKIPPED), so no --skip list is needed here.
# The module evaluation tests run in the flake's `module-eval` check.
{
  lib,
  rustPlatform,
}:

let
  cargo = lib.importTOML ../Cargo.toml;
in
rustPlatform.buildRustPackage {
  pname = cargo.package.name;
  inherit (cargo.package) version;

  src = lib.fileset.toSource {
    root = ../.;
    fileset = lib.fileset.unions [
      ../Cargo.toml
      ../Cargo.lock
      ../src
      ../templates
      ../modules/catalog
      ../tests
      ../examples
      (lib.fileset.maybeMissing ../README.md)
      (lib.fileset.maybeMissing ../clippy.toml)
    ];
  };

  cargoLock.lockFile = ../Cargo.lock;

  # Integration tests start the binary and write temporary files only.
  checkFlags = [ "--test-threads=2" ];

  # One binary, several names: `nixarr-migrate` is `nixarr-units migration`.
  postInstall = ''
    ln -s nixarr-units $out/bin/nixarr-migrate
  '';

  meta = {
    description = cargo.package.description;
    homepage = cargo.package.repository;
    license = lib.licenses.mit;
    mainProgram = "nixarr-units";
    platforms = lib.platforms.linux;
  };
}
