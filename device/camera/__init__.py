"""The kiosk camera: frame sources, contact-free vitals (heart and breathing rate), and case photos."""
