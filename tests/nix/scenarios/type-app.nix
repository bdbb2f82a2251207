{ lib }:
{
  description = "type error: an instance of an unknown app";
  config = {
    services.nixarr-units = {
      enable = true;
      instances.tv.app = "sonar";
    };
  };
  evalError = "services.nixarr-units.instances.tv.app";
}
