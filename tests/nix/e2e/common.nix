# The fake app (tests/e2e/fake-app) as a container of the module: an *arr
# style app on container port 8080, checked by a command inside, published
# on `port`. Shared by the scenarios of the NixOS end-to-end mode.
{ image }:
port: extra:
{
  inherit image;
  ports = [
    {
      host = port;
      container = 8080;
    }
  ];
  environment.FAKE_STYLE = "arr";
  health = {
    cmd = "wget -q -O /dev/null http://127.0.0.1:8080/ping";
    interval = "2s";
    retries = 3;
    startPeriod = "60s";
  };
  stopTimeout = 10;
  startTimeout = 120;
}
// extra
