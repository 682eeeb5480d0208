#pragma once
// Sending to a DICOM peer (C-STORE and C-ECHO as SCU), with every failure classified so that the
// caller can tell a retry from a dead letter: Transient (connection refused, timeout, transient
// rejection, 0xA7xx, broken association) or Permanent (AE title rejected, SOP class not accepted,
// 0xA9xx, 0xCxxx, 0x0122). One association per call; thread-safe (no shared state).
#include <cstdint>
#include <string>
#include <vector>

#include "core/result.h"

namespace triage::dicom_io {

struct Peer {
    std::string ae_title, host, calling_ae;
    int port = 0;
    int timeout_seconds = 30;
};

struct OutgoingInstance {
    std::string path, sop_class_uid, sop_instance_uid;
};

/// What happened to one instance: ok (status 0x0000 or a warning 0xBxxx), or an error whose kind
/// is Transient or Permanent. `status` is the peer's DIMSE status (-1 when none came back).
struct SendOutcome {
    bool ok = false;
    int status = -1;
    core::ErrorKind kind = core::ErrorKind::Transient;
    std::string error;
};

/// Opens one association and sends every instance. An association-level failure returns an error
/// (same for all instances); otherwise one outcome per instance, in order.
core::Result<std::vector<SendOutcome>> send_instances(const Peer& peer, const std::vector<OutgoingInstance>& instances);

/// C-ECHO; ok or a classified error.
core::Status echo(const Peer& peer);

/// Transient or Permanent for a C-STORE response status that is not success or warning.
core::ErrorKind classify_store_status(int status);

}  // namespace triage::dicom_io
