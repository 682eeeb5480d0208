#include "dicom_io/dcmtk_setup.h"

#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dcdict.h>
#include <dcmtk/dcmdata/dcrledrg.h>
#include <dcmtk/dcmjpeg/djdecode.h>
#include <dcmtk/dcmjpls/djdecode.h>
#include <dcmtk/dcmnet/dul.h>
#include <dcmtk/oflog/oflog.h>

#include <cstdlib>
#include <mutex>

namespace triage::dicom_io {

core::Status init_dcmtk() {
    static std::once_flag once;
    static core::Status result;
    std::call_once(once, [] {
        // Debian's DCMTK leaves Nagle on unless asked: every C-STORE response would wait for a
        // delayed ACK (≈40 ms). Must be set before the first socket is created.
        setenv("TCP_NODELAY", "1", 1);
        OFLog::configure(OFLogger::ERROR_LOG_LEVEL);
        dcmDisableGethostbyaddr.set(OFTrue);  // no reverse DNS per association
        if (!dcmDataDict.isDictionaryLoaded()) {
            result = core::make_error(core::ErrorKind::Permanent,
                                      "DCMTK data dictionary not loaded (package libdcmtk17)");
            return;
        }
        DJDecoderRegistration::registerCodecs();
        DJLSDecoderRegistration::registerCodecs();
        DcmRLEDecoderRegistration::registerCodecs();
    });
    return result;
}

}  // namespace triage::dicom_io
