"""OCR: photo + meter profile -> register reading with confidence. Pure library: no network, no database."""
