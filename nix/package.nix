# The nixarr-units binary. Its own tests run in the check phase; those that
# need root, systemd, podman, docker or nix-instantiate skip themselves in
# the build sandbox (they print SKIPPED), so no --skip list is needed here.
# The module evaluation tests run in the flake's `module-eval` check.
{
  lib,
  stdenv,
  rustPlatform,
  installShellFiles,
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

  nativeBuildInputs = [ installShellFiles ];

  # One binary, several names: `nixarr-migrate` is `nixarr-units migration`.
  # Completions and man pages come from the binary itself (clap), for both
  # names.
  postInstall = ''
    ln -s nixarr-units $out/bin/nixarr-migrate
  ''
  + lib.optionalString (stdenv.buildPlatform.canExecute stdenv.hostPlatform) ''
    for name in nixarr-units nixarr-migrate; do
      installShellCompletion --cmd $name \
        --bash <($out/bin/nixarr-units completions bash --bin $name) \
        --fish <($out/bin/nixarr-units completions fish --bin $name) \
        --zsh <($out/bin/nixarr-units completions zsh --bin $name)
    done
    $out/bin/nixarr-units man --out man
    installManPage man/*.1
  '';

  meta = {
    description = cargo.package.description;
    homepage = cargo.package.repository;
    license = lib.licenses.mit;
    mainProgram = "nixarr-units";
    platforms = lib.platforms.linux;
  };
}
