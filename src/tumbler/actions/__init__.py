"""What an accepted knock does: a door's own command and the firewall backends."""
