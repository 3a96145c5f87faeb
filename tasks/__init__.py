"""pyinfra deploys that make up regdeploy; deploy.py calls them in order."""
