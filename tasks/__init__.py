"""pyinfra deploys that make up regdeploy, installed as regdeploy.tasks; regdeploy.deploys.registry calls them in order."""
