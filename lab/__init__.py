"""The lab: throwaway Debian hosts (systemd + sshd in containers) for the demo, the tests and CI."""
