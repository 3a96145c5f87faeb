# Shared by every host of the inventory beside this folder: the deploy, the regdeploy command and
# the verify suite all read it. Every variable: docs/reference/variables.md.

registry_tls = True                 # HTTPS, with a CA regdeploy makes in .regdeploy/tls/
registry_auth = True                # accounts; every Docker host logs in as registry_login_user
registry_users = ["ci", "reader"]   # passwords: REGDEPLOY_PASSWORD_CI in the environment, or a
                                    # "user:password" line each in .regdeploy/passwords (mode 0600)
registry_login_user = "reader"      # what the hosts' Docker logs in as
