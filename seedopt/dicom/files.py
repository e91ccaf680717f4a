"""Reading DICOM files with one-line errors, and the header parts every seedopt object shares
(patient, study, series, frame of reference, equipment, SOP common)."""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid

from .. import __version__
from ..errors import SeedoptError

RT_PLAN_STORAGE = "1.2.840.10008.5.1.4.1.1.481.5"
RT_DOSE_STORAGE = "1.2.840.10008.5.1.4.1.1.481.2"
RT_STRUCT_STORAGE = "1.2.840.10008.5.1.4.1.1.481.3"
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"


def read_dataset(path: Path, what: str, *, pixels: bool = True) -> Dataset:
    """A DICOM file, or a one-line error naming ``what`` was expected."""
    try:
        return pydicom.dcmread(path, stop_before_pixels=not pixels)
    except (OSError, pydicom.errors.InvalidDicomError) as exc:
        raise SeedoptError(f"cannot read {what} {path}: {exc}") from None


def require_modality(ds: Dataset, path: Path, modality: str) -> None:
    found = ds.get("Modality", "none")
    if found != modality:
        raise SeedoptError(f"{path}: expected a DICOM {modality}, found modality {found}")


@dataclass(frozen=True)
class Study:
    """What a new object copies from the case's structure set so that every object of the case
    shares one patient, study and frame of reference."""

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

    @classmethod
    def of(cls, ds: Dataset, frame_of_reference_uid: str) -> Study:
        return cls(
            str(ds.get("PatientName", "")),
            str(ds.get("PatientID", "")),
            str(ds.get("PatientBirthDate", "")),
            str(ds.get("PatientSex", "")),
            str(ds.StudyInstanceUID),
            str(ds.get("StudyID", "")),
            str(ds.get("StudyDate", "")),
            str(ds.get("StudyTime", "")),
            str(ds.get("ReferringPhysicianName", "")),
            str(ds.get("AccessionNumber", "")),
            frame_of_reference_uid,
        )


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
    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
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
