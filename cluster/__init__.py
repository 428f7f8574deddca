"""The convention of actor systems across hosts: where actors go (placement), who is alive (membership), the
member side of `launcher.py --join` (member), and the process helpers the launcher and a member share."""
