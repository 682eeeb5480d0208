#include "dicom_io/dimse_status.h"

namespace triage::dicom_io {

std::uint16_t store_status_for(const core::Error& error) {
    switch (error.kind) {
        case core::ErrorKind::Transient:
        case core::ErrorKind::Internal: return kStatusOutOfResources;
        case core::ErrorKind::InvalidInput: return kStatusDataSetMismatch;
        case core::ErrorKind::Permanent:
        case core::ErrorKind::NotFound: return kStatusCannotUnderstand;
    }
    return kStatusCannotUnderstand;
}

}  // namespace triage::dicom_io
