"""FHIR R4 export: the hub's patients, devices and readings as FHIR resources (vital-signs profiles, HL7 PHD IG)."""
