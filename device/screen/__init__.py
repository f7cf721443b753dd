"""The kiosk screen: the local web app a patient touches (check-in, vitals, cases, answers).

Served by the kiosk process on 127.0.0.1 only and shown full-screen by Chromium in kiosk mode.
`visit.py` and `checkin.py` hold the rules (pure), `station.py` the hardware (Bluetooth, camera),
`app.py` and `routes/` the pages, `i18n.py` the translations.
"""
