"""The codes Homeward's FHIR resources carry: LOINC and SNOMED CT per metric, the R4
vital-signs profiles, UCUM, and the few extensions of our own (docs/fhir.md).

SNOMED CT concepts are the international observable entities for each measurement; they
were chosen by hand from the SNOMED CT browser and are not checked here against the UK
Core terminology server (it cannot be reached from this build), see docs/fhir.md.
"""

from __future__ import annotations

from dataclasses import dataclass

from homeward.metrics import BP_PANEL_LOINC, CATALOGUE

LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
UCUM = "http://unitsofmeasure.org"
CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
DATA_ABSENT = "http://terminology.hl7.org/CodeSystem/data-absent-reason"
FLAG_PRIORITY_EXTENSION = "http://hl7.org/fhir/StructureDefinition/flag-priority"
FLAG_PRIORITY = "http://hl7.org/fhir/flag-priority-code"
VITAL_SIGNS_PROFILE = "http://hl7.org/fhir/StructureDefinition/vitalsigns"

# Homeward's own canonical base. ``.example`` is reserved (RFC 2606): an organisation that
# publishes these profiles replaces it with a base it controls.
CANONICAL = "https://homeward.example/fhir"
READING_FLAG_EXTENSION = f"{CANONICAL}/StructureDefinition/reading-flag"
LATE_EXTENSION = f"{CANONICAL}/StructureDefinition/late-arrival"
LAST_SEEN_EXTENSION = f"{CANONICAL}/StructureDefinition/device-last-seen"
READING_IDENTIFIER = f"{CANONICAL}/NamingSystem/device-message"
DEVICE_IDENTIFIER = f"{CANONICAL}/NamingSystem/device-id"
ALERT_KIND = f"{CANONICAL}/CodeSystem/alert-kind"
ALERT_RULE = f"{CANONICAL}/CodeSystem/alert-rule"

BLOOD_PRESSURE = "blood_pressure"  # one Observation: the panel with two components


@dataclass(frozen=True, slots=True)
class ObservationCode:
    """How one kind of Observation is coded."""

    key: str  # Homeward's metric name, or ``blood_pressure`` for the panel
    display: str
    loinc: tuple[str, ...]  # the first is the primary code
    snomed: str
    snomed_display: str
    profile: str | None  # the R4 vital-signs profile it conforms to, if any
    category: str  # observation-category code
    metrics: tuple[str, ...]  # the readings it is made of


SNOMED_CODES: dict[str, tuple[str, str, str | None]] = {
    # metric: (SNOMED CT concept id, its preferred term, R4 vital-signs profile id)
    "heart_rate": ("364075005", "Heart rate", "heartrate"),
    "respiratory_rate": ("86290005", "Respiratory rate", "resprate"),
    "spo2": ("431314004", "Peripheral oxygen saturation", "oxygensat"),
    "body_temperature": ("386725007", "Body temperature", "bodytemp"),
    "body_weight": ("27113001", "Body weight", "bodyweight"),
    "blood_glucose": ("434912009", "Blood glucose concentration", None),
    "systolic_bp": ("271649006", "Systolic blood pressure", None),
    "diastolic_bp": ("271650006", "Diastolic blood pressure", None),
}
BP_SNOMED = ("75367002", "Blood pressure")
BP_COMPONENTS = ("systolic_bp", "diastolic_bp")


def _metric_code(name: str) -> ObservationCode:
    spec = CATALOGUE[name]
    snomed, snomed_display, profile = SNOMED_CODES[name]
    loinc = (spec.loinc, *spec.alt_loinc)
    if name == "spo2":  # the R4 oxygensat profile asks for 2708-6 among the codings
        loinc = ("2708-6", *(c for c in loinc if c != "2708-6"))
    return ObservationCode(
        key=name,
        display=spec.display,
        loinc=loinc,
        snomed=snomed,
        snomed_display=snomed_display,
        profile=f"http://hl7.org/fhir/StructureDefinition/{profile}" if profile else None,
        # Capillary glucose is a point-of-care test, not one of the R4 vital signs.
        category="laboratory" if name == "blood_glucose" else "vital-signs",
        metrics=(name,),
    )


CODES: dict[str, ObservationCode] = {
    **{name: _metric_code(name) for name in CATALOGUE if name not in BP_COMPONENTS},
    BLOOD_PRESSURE: ObservationCode(
        key=BLOOD_PRESSURE,
        display="Blood pressure panel",
        loinc=(BP_PANEL_LOINC,),
        snomed=BP_SNOMED[0],
        snomed_display=BP_SNOMED[1],
        profile="http://hl7.org/fhir/StructureDefinition/bp",
        category="vital-signs",
        metrics=BP_COMPONENTS,
    ),
}

# A search token (``code=…``) → the Observation kinds it names: each LOINC and SNOMED
# code, with or without its system.
_BY_TOKEN: dict[tuple[str | None, str], str] = {}
for _key, _code in CODES.items():
    for _loinc in _code.loinc:
        _BY_TOKEN[(LOINC, _loinc)] = _key
        _BY_TOKEN[(None, _loinc)] = _key
    _BY_TOKEN[(SNOMED, _code.snomed)] = _key
    _BY_TOKEN[(None, _code.snomed)] = _key


def code_for_token(token: str) -> str | None:
    """``http://loinc.org|8867-4``, ``8867-4`` or a SNOMED CT code → the kind, if known."""
    system, sep, code = token.rpartition("|")
    return _BY_TOKEN.get((system if sep and system else None, code))


def kind_of(metric: str) -> str:
    """The Observation kind a stored reading belongs to."""
    return BLOOD_PRESSURE if metric in BP_COMPONENTS else metric


PRIORITY_CODES = {"red": "PH", "amber": "PM", "technical": "PL"}
PRIORITY_DISPLAY = {"PH": "High priority", "PM": "Medium priority", "PL": "Low priority"}
