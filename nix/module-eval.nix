# The module evaluation tests (tests/nix_eval.rs, scenarios in tests/nix/)
# inside the build sandbox, with the real nixpkgs lib and nix-instantiate on
# a private store, so `nix flake check` runs exactly what tests/run.sh runs.
{
  lib,
  pkgs,
  package,
}:

package.overrideAttrs (old: {
  pname = "nixarr-units-module-eval";

  src = lib.fileset.toSource {
    root = ../.;
    fileset = lib.fileset.unions [
      ../Cargo.toml
      ../Cargo.lock
      ../src
      ../templates
      ../modules
      ../nix
      ../tests
      ../docs/options.md
      ../flake.nix
      (lib.fileset.maybeMissing ../README.md)
      (lib.fileset.maybeMissing ../clippy.toml)
    ];
  };

  nativeCheckInputs = (old.nativeCheckInputs or [ ]) ++ [ pkgs.nix ];

  # nix-instantiate needs a store of its own in the sandbox (as nixpkgs'
  # lib tests do); evaluation only reads files, it builds nothing. The same
  # script gives tests/run.sh its second, flake-like run of this suite.
  preCheck = (old.preCheck or "") + ''
    . tests/nix/private-store.sh "$(mktemp -d)"
    export NIXPKGS_LIB=${pkgs.path}/lib
  '';

  cargoTestFlags = [
    "--test"
    "nix_eval"
  ];

  # Nothing to install: the check is the product. The package's own
  # install hooks (the nixarr-migrate link into $out/bin) do not apply to a
  # file (tests/nix_eval.rs, module_eval_check_install_phase_runs).
  installPhase = ''
    runHook preInstall
    touch $out
    runHook postInstall
  '';
  preInstall = "";
  postInstall = "";
  doInstallCheck = false;
})
