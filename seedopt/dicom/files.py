"""Reading DICOM files with one-line errors (complete, every value readable, numbers checked
where they are used), and the header parts every seedopt object shares (patient, study,
series, frame of reference, equipment, SOP common), copied only when valid for their VR."""

from __future__ import annotations

import datetime as _dt
import io
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid
from pydicom.valuerep import validate_value

from .. import __version__
from ..errors import SeedoptError
from ..notes import note
from .integrity import Incomplete, check_complete, tag_name

RT_PLAN_STORAGE = "1.2.840.10008.5.1.4.1.1.481.5"
RT_DOSE_STORAGE = "1.2.840.10008.5.1.4.1.1.481.2"
RT_STRUCT_STORAGE = "1.2.840.10008.5.1.4.1.1.481.3"
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"


PREAMBLE_BYTES = 128


def has_preamble(path: Path) -> bool:
    """Whether ``path`` starts like a DICOM Part 10 file (128 bytes, then "DICM")."""
    try:
        with Path(path).open("rb") as fh:
            return fh.read(PREAMBLE_BYTES + 4)[PREAMBLE_BYTES:] == b"DICM"
    except OSError as exc:
        raise SeedoptError(f"cannot read {path}: {exc.strerror}") from None


def _read_every_value(ds: Dataset, path: Path, inside: str = "") -> None:
    """Decode every value now, so that a malformed one is an error naming its attribute
    (pydicom otherwise decodes lazily, wherever the value is first used)."""
    for tag in list(ds.keys()):
        if tag.group == 0xFFFE:  # a stray delimiter some systems write: no value to read
            del ds[tag]
            continue
        try:
            elem = ds[tag]
        except Exception as exc:  # pydicom raises a dozen types for malformed values
            raise SeedoptError(
                f"{path}: {inside}{tag_name(int(tag))} cannot be read: {exc}"
            ) from None
        if elem.VR == "SQ":
            for k, item in enumerate(elem.value):
                _read_every_value(item, path, f"{inside}{elem.keyword or tag_name(tag)}[{k}].")


def read_dataset(path: Path, what: str, *, pixels: bool = True) -> Dataset:
    """A complete DICOM file with every value readable, or a one-line error naming ``what``
    was expected and what is wrong (a cut file, a malformed value)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SeedoptError(f"cannot read {what} {path}: {exc.strerror}") from None
    if data[PREAMBLE_BYTES : PREAMBLE_BYTES + 4] != b"DICM":
        raise SeedoptError(f"cannot read {what} {path}: not a DICOM file (no DICM preamble)")
    try:
        check_complete(data)
    except Incomplete as exc:
        raise SeedoptError(f"{path}: the {what} file is truncated or damaged: {exc}") from None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # seedopt checks the values it uses, by name
        try:
            ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=not pixels)
        except Exception as exc:  # pydicom raises many types for damaged files
            raise SeedoptError(f"cannot read {what} {path}: {exc}") from None
        _read_every_value(ds, path)
    return ds


def numbers(
    ds: Dataset, keyword: str, path: Path, where: str = "", count: int | None = None
) -> np.ndarray:
    """The finite numbers of attribute ``keyword`` (float64), or an error naming the file,
    the attribute (``where`` says in which item) and what is wrong with it."""
    label = f"{Path(path).name}: {where}{keyword}"
    if keyword not in ds or ds[keyword].value is None or ds[keyword].value == "":
        raise SeedoptError(f"{label} is missing")
    raw = ds[keyword].value
    values = list(raw) if isinstance(raw, (list, tuple, pydicom.multival.MultiValue)) else [raw]
    try:
        out = np.array([float(v) for v in values], dtype=np.float64)
    except (TypeError, ValueError):
        shown = "\\".join(str(v) for v in values[:6]) + ("..." if len(values) > 6 else "")
        raise SeedoptError(f"{label} holds '{shown}', not numbers") from None
    if not np.all(np.isfinite(out)):
        k = int(np.argmin(np.isfinite(out)))
        raise SeedoptError(f"{label}: value {k + 1} of {len(out)} is {out[k]} (not finite)")
    if count is not None and len(out) != count:
        raise SeedoptError(f"{label} has {len(out)} values, expected {count}")
    return out


def number(ds: Dataset, keyword: str, path: Path, where: str = "") -> float:
    """The one finite number of attribute ``keyword`` (see ``numbers``)."""
    return float(numbers(ds, keyword, path, where, count=1)[0])


def integer(ds: Dataset, keyword: str, path: Path, where: str = "") -> int:
    """The one whole number of attribute ``keyword`` (see ``numbers``)."""
    value = number(ds, keyword, path, where)
    if value != int(value):
        raise SeedoptError(f"{Path(path).name}: {where}{keyword} is {value:g}, not a whole number")
    return int(value)


def sequence(ds: Dataset, keyword: str) -> list[Dataset]:
    """The items of a sequence attribute (none when it is absent or empty)."""
    value = ds.get(keyword)
    return list(value) if value else []


def require_modality(ds: Dataset, path: Path, modality: str) -> None:
    found = ds.get("Modality", "none")
    if found != modality:
        raise SeedoptError(f"{path}: expected a DICOM {modality}, found modality {found}")


_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1a\x1c-\x1f\x7f]")  # ESC (1b) starts ISO 2022
_VM1 = {"PN", "LO", "SH", "CS", "DA", "TM", "UI"}
_SEX = {"", "M", "F", "O"}


def vr_problem(vr: str, value: str) -> str | None:
    """What makes ``value`` invalid for a single-valued attribute of ``vr`` (None: valid)."""
    if _CONTROL.search(value):
        return "holds control characters"
    if vr in _VM1 and "\\" in value:
        return "holds a backslash (several values where one is allowed)"
    try:
        validate_value(vr, value, pydicom.config.RAISE)
    except ValueError as exc:
        reason = str(exc).split(". Please see")[0].rstrip(".")
        too_long = re.search(r"\((\d+)\) exceeds the maximum (?:allowed )?length of (\d+)", reason)
        if too_long:
            return f"is {too_long[1]} characters long; VR {vr} allows {too_long[2]}"
        return f"is invalid for VR {vr}"
    if vr == "DA" and value:
        try:
            _dt.datetime.strptime(value, "%Y%m%d")
        except ValueError:
            return "is not a calendar date (YYYYMMDD)"
    if vr == "TM" and value:
        digits = value.split(".")[0]
        parts = [int(digits[k : k + 2]) for k in range(0, len(digits), 2)]
        if any(p > lim for p, lim in zip(parts, (23, 59, 60), strict=False)):
            return "is not a time of day (HHMMSS)"
    return None


@dataclass(frozen=True)
class Study:
    """What a new object copies from the case's structure set so that every object of the case
    shares one patient, study and frame of reference. Values invalid for their VR are not
    copied: text is left empty and UIDs are replaced (the same replacement in every object of
    the case); ``replaced`` says what was changed, for the notes written with new objects."""

    patient_name: str
    patient_id: str
    patient_birth_date: str
    patient_sex: str
    study_instance_uid: str
    study_id: str
    study_date: str
    study_time: str
    referring_physician: str
    accession_number: str
    frame_of_reference_uid: str
    replaced: tuple[str, ...] = ()

    @classmethod
    def of(
        cls, ds: Dataset, frame_of_reference_uid: str, source: str = "the structure set"
    ) -> Study:
        values = {
            "patient_name": ("PatientName", "PN"),
            "patient_id": ("PatientID", "LO"),
            "patient_birth_date": ("PatientBirthDate", "DA"),
            "patient_sex": ("PatientSex", "CS"),
            "study_instance_uid": ("StudyInstanceUID", "UI"),
            "study_id": ("StudyID", "SH"),
            "study_date": ("StudyDate", "DA"),
            "study_time": ("StudyTime", "TM"),
            "referring_physician": ("ReferringPhysicianName", "PN"),
            "accession_number": ("AccessionNumber", "SH"),
        }
        kept: dict[str, str] = {}
        replaced: list[str] = []
        for name, (keyword, vr) in values.items():
            kept[name], why = conformant(vr, str(ds.get(keyword, "") or ""), keyword, source)
            replaced += [why] if why else []
            if name == "patient_sex" and kept[name] not in _SEX:
                replaced.append(
                    f"{keyword} {kept[name]!r} of {source} is not M, F or O; left empty"
                )
                kept[name] = ""
        frame, why = conformant("UI", frame_of_reference_uid, "FrameOfReferenceUID", source)
        replaced += [why] if why else []
        return cls(**kept, frame_of_reference_uid=frame, replaced=tuple(replaced))

    def text_values(self) -> Iterator[str]:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, str):
                yield value


def plain_text(value: str, max_chars: int) -> str:
    """Text of seedopt's own (a case name) fit for a single-valued SH/LO attribute: control
    characters dropped, a backslash (the value separator) written as "/", at most
    ``max_chars`` characters."""
    return _CONTROL.sub("", value).replace("\\", "/").strip()[:max_chars]


def conformant(vr: str, value: str, keyword: str, source: str) -> tuple[str, str | None]:
    """``value`` when valid for ``vr``, else ("" or, for a UID, a new UID derived from the
    value) with a sentence saying so."""
    problem = vr_problem(vr, value)
    if problem is None:
        return value, None
    shown = value if len(value) <= 40 else value[:37] + "..."
    if vr == "UI":
        uid = generate_uid(entropy_srcs=[value]) if value else generate_uid()
        return uid, f"{keyword} {shown!r} of {source} {problem}; replaced by {uid}"
    return "", f"{keyword} {shown!r} of {source} {problem}; left empty"


def _character_set(values: Iterator[str]) -> str:
    """ISO_IR 100 (Latin-1) when every value fits it, else ISO_IR 192 (UTF-8)."""
    try:
        for v in values:
            v.encode("latin-1")
    except UnicodeEncodeError:
        return "ISO_IR 192"
    return "ISO_IR 100"


def new_dataset(sop_class_uid: str, modality: str, study: Study, description: str) -> Dataset:
    """A dataset with the patient, study, series, frame of reference, equipment and SOP common
    modules filled, a new SOP instance and series UID, explicit VR little endian."""
    now = _dt.datetime.now()
    date, time = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(sop_class_uid)
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = generate_uid(entropy_srcs=["seedopt"])
    meta.ImplementationVersionName = f"SEEDOPT_{__version__}"[:16]
    for why in study.replaced:
        note(f"{why} in the new {modality}")
    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = _character_set(study.text_values())
    ds.SOPClassUID = sop_class_uid
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.InstanceCreationDate, ds.InstanceCreationTime = date, time
    ds.PatientName = study.patient_name
    ds.PatientID = study.patient_id
    ds.PatientBirthDate = study.patient_birth_date
    ds.PatientSex = study.patient_sex
    ds.StudyInstanceUID = study.study_instance_uid
    ds.StudyID = study.study_id
    ds.StudyDate = study.study_date
    ds.StudyTime = study.study_time
    ds.ReferringPhysicianName = study.referring_physician
    ds.AccessionNumber = study.accession_number
    ds.Modality = modality
    ds.SeriesInstanceUID = generate_uid()
    ds.SeriesNumber = 1
    ds.SeriesDescription = description
    ds.OperatorsName = ""
    ds.FrameOfReferenceUID = study.frame_of_reference_uid
    ds.PositionReferenceIndicator = ""
    ds.Manufacturer = "seedopt"
    ds.ManufacturerModelName = "seedopt"
    ds.SoftwareVersions = __version__
    return ds


def save(ds: Dataset, path: Path) -> None:
    """Write a dataset as a DICOM Part 10 file (atomically)."""
    from ..atomic import atomic_path

    with atomic_path(path) as tmp:
        pydicom.dcmwrite(tmp, ds, enforce_file_format=True)
