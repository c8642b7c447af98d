"""What runs on the Raspberry Pi: camera backends, schedule, spool, uploader, systemd units."""
