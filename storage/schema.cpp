#include "storage/schema.h"

namespace triage::storage {

const std::vector<std::string>& migrations() {
    static const std::vector<std::string> m = {
        // v1: receiver index, jobs, append-only audit trail
        R"SQL(
CREATE TABLE studies (
  study_uid          TEXT PRIMARY KEY,
  patient_id         TEXT NOT NULL DEFAULT '',
  accession          TEXT NOT NULL DEFAULT '',
  study_date         TEXT NOT NULL DEFAULT '',
  study_time         TEXT NOT NULL DEFAULT '',
  first_received_at  TEXT NOT NULL,
  last_received_at   TEXT NOT NULL,
  completion_pending INTEGER NOT NULL DEFAULT 1,  -- 1: instances arrived since the last completion
  completed_at       TEXT,
  priority_level     TEXT,
  priority_score     REAL
);
CREATE INDEX studies_pending ON studies(completion_pending, last_received_at);
CREATE TABLE series (
  series_uid            TEXT PRIMARY KEY,
  study_uid             TEXT NOT NULL REFERENCES studies(study_uid),
  modality              TEXT NOT NULL DEFAULT '',
  body_part             TEXT NOT NULL DEFAULT '',
  series_description    TEXT NOT NULL DEFAULT '',
  series_number         TEXT NOT NULL DEFAULT '',
  frame_of_reference_uid TEXT NOT NULL DEFAULT '',
  first_received_at     TEXT NOT NULL,
  last_received_at      TEXT NOT NULL
);
CREATE INDEX series_study ON series(study_uid);
CREATE TABLE instances (
  sop_instance_uid    TEXT PRIMARY KEY,
  series_uid          TEXT NOT NULL REFERENCES series(series_uid),
  study_uid           TEXT NOT NULL REFERENCES studies(study_uid),
  sop_class_uid       TEXT NOT NULL,
  transfer_syntax_uid TEXT NOT NULL,
  instance_number     TEXT NOT NULL DEFAULT '',
  image_type          TEXT NOT NULL DEFAULT '',
  rows                INTEGER NOT NULL DEFAULT 0,
  columns             INTEGER NOT NULL DEFAULT 0,
  frames              INTEGER NOT NULL DEFAULT 0,
  file_path           TEXT NOT NULL,   -- relative to data_dir
  file_size           INTEGER NOT NULL,
  received_at         TEXT NOT NULL,
  calling_ae          TEXT NOT NULL DEFAULT '',
  peer                TEXT NOT NULL DEFAULT '',
  receive_count       INTEGER NOT NULL DEFAULT 1
);
CREATE INDEX instances_series ON instances(series_uid);
CREATE INDEX instances_study ON instances(study_uid);
CREATE TABLE jobs (
  id          INTEGER PRIMARY KEY,
  study_uid   TEXT NOT NULL REFERENCES studies(study_uid),
  version     INTEGER NOT NULL,
  state       TEXT NOT NULL CHECK (state IN ('queued','running','done','failed')),
  priority    INTEGER NOT NULL DEFAULT 0,
  attempts    INTEGER NOT NULL DEFAULT 0,
  error       TEXT,
  created_at  TEXT NOT NULL,
  started_at  TEXT,
  finished_at TEXT,
  UNIQUE (study_uid, version)
);
CREATE INDEX jobs_state ON jobs(state, priority, id);
CREATE TABLE audit_events (
  id               INTEGER PRIMARY KEY,
  time             TEXT NOT NULL,
  event            TEXT NOT NULL,
  study_uid        TEXT,
  sop_instance_uid TEXT,
  job_id           INTEGER,
  calling_ae       TEXT,
  called_ae        TEXT,
  peer             TEXT,
  status           INTEGER,
  detail           TEXT    -- JSON object with event-specific fields
);
CREATE INDEX audit_time ON audit_events(time);
CREATE INDEX audit_study ON audit_events(study_uid);
CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
  BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END;
CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
  BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END;
)SQL",
        // v2: analysis results (one row per job that ran), per-series outcome, findings
        R"SQL(
CREATE TABLE analyses (
  job_id            INTEGER PRIMARY KEY REFERENCES jobs(id),
  study_uid         TEXT NOT NULL REFERENCES studies(study_uid),
  model_name        TEXT NOT NULL,
  model_version     TEXT NOT NULL,
  model_sha256      TEXT NOT NULL,
  region            TEXT NOT NULL DEFAULT '',
  report_findings   TEXT NOT NULL,
  report_impression TEXT NOT NULL,
  seconds_total REAL, seconds_preprocess REAL, seconds_vision REAL, seconds_decode REAL, seconds_mask REAL,
  created_at        TEXT NOT NULL
);
CREATE INDEX analyses_study ON analyses(study_uid);
CREATE TABLE series_results (
  job_id        INTEGER NOT NULL REFERENCES jobs(id),
  series_uid    TEXT NOT NULL,
  analyzed      INTEGER NOT NULL,
  skip_reason   TEXT,
  warnings      TEXT NOT NULL DEFAULT '[]',   -- JSON array
  slices        TEXT NOT NULL DEFAULT '[]',   -- JSON array of [sop_instance_uid, frame] per sorted slice
  segments_path TEXT,                         -- relative to data_dir; RLE segment map
  PRIMARY KEY (job_id, series_uid)
);
CREATE TABLE findings (
  id          INTEGER PRIMARY KEY,
  job_id      INTEGER NOT NULL REFERENCES jobs(id),
  study_uid   TEXT NOT NULL,
  series_uid  TEXT NOT NULL,
  segment     INTEGER NOT NULL,
  label       TEXT NOT NULL,
  code        TEXT NOT NULL DEFAULT '',
  site_code   TEXT NOT NULL DEFAULT '',
  volume_ml REAL, diameter_mm REAL, confidence REAL, mean_value REAL,
  first_slice INTEGER, last_slice INTEGER, key_slice INTEGER,
  side        TEXT NOT NULL DEFAULT '',
  description TEXT NOT NULL DEFAULT ''
);
CREATE INDEX findings_job ON findings(job_id);
CREATE INDEX findings_study ON findings(study_uid);
)SQL",
        // v3: DICOM outputs of a job (SEG, SR) and their delivery to each destination
        R"SQL(
CREATE TABLE outputs (
  id               INTEGER PRIMARY KEY,
  job_id           INTEGER NOT NULL REFERENCES jobs(id),
  study_uid        TEXT NOT NULL,
  kind             TEXT NOT NULL CHECK (kind IN ('seg','sr')),
  series_uid       TEXT NOT NULL,             -- of the output object
  source_series_uid TEXT,                     -- SEG: the segmented series
  sop_class_uid    TEXT NOT NULL,
  sop_instance_uid TEXT NOT NULL UNIQUE,
  path             TEXT NOT NULL,             -- relative to data_dir
  frames           INTEGER NOT NULL DEFAULT 0,
  created_at       TEXT NOT NULL
);
CREATE INDEX outputs_study ON outputs(study_uid);
CREATE TABLE deliveries (
  id              INTEGER PRIMARY KEY,
  output_id       INTEGER NOT NULL REFERENCES outputs(id),
  destination     TEXT NOT NULL,
  state           TEXT NOT NULL CHECK (state IN ('pending','sent','failed')),
  attempts        INTEGER NOT NULL DEFAULT 0,
  next_attempt_at TEXT NOT NULL,
  last_status     INTEGER,                    -- DIMSE status of the last response
  last_error      TEXT,
  updated_at      TEXT NOT NULL,
  UNIQUE (output_id, destination)
);
CREATE INDEX deliveries_due ON deliveries(destination, state, next_attempt_at);
)SQL",
        // v4: worklist priority (reasons per study and per analysis) and urgency known at reception
        R"SQL(
ALTER TABLE studies ADD COLUMN study_description TEXT NOT NULL DEFAULT '';
ALTER TABLE studies ADD COLUMN intake_priority INTEGER NOT NULL DEFAULT 0;
ALTER TABLE studies ADD COLUMN priority_reasons TEXT NOT NULL DEFAULT '[]';
ALTER TABLE analyses ADD COLUMN priority_score REAL;
ALTER TABLE analyses ADD COLUMN priority_level TEXT;
ALTER TABLE analyses ADD COLUMN priority_reasons TEXT NOT NULL DEFAULT '[]';
)SQL",
        // v5: data retention (instances of a study purged; the study row and its results stay)
        R"SQL(
ALTER TABLE studies ADD COLUMN instances_purged_at TEXT;
)SQL",
        // v6: SEG/SR that could not be written for an analysis (the others still were)
        R"SQL(
ALTER TABLE analyses ADD COLUMN output_errors TEXT NOT NULL DEFAULT '[]';
)SQL",
        // v7: how each finding's label was decided (recognized name, host organ evidence)
        R"SQL(
ALTER TABLE findings ADD COLUMN grounding TEXT NOT NULL DEFAULT '';
)SQL",
        // v8: key images (Secondary Capture) and the Key Object Selection are outputs too. SQLite
        // cannot change a CHECK: both tables are rebuilt, deliveries first pointing at the new
        // outputs table (renaming that table re-points the reference), so no row ever dangles.
        R"SQL(
CREATE TABLE outputs_v8 (
  id               INTEGER PRIMARY KEY,
  job_id           INTEGER NOT NULL REFERENCES jobs(id),
  study_uid        TEXT NOT NULL,
  kind             TEXT NOT NULL CHECK (kind IN ('seg','sr','keyimage','kos')),
  series_uid       TEXT NOT NULL,             -- of the output object
  source_series_uid TEXT,                     -- SEG and key image: the source series
  sop_class_uid    TEXT NOT NULL,
  sop_instance_uid TEXT NOT NULL UNIQUE,
  path             TEXT NOT NULL,             -- relative to data_dir
  frames           INTEGER NOT NULL DEFAULT 0,
  created_at       TEXT NOT NULL
);
INSERT INTO outputs_v8 SELECT id,job_id,study_uid,kind,series_uid,source_series_uid,sop_class_uid,sop_instance_uid,
  path,frames,created_at FROM outputs;
CREATE TABLE deliveries_v8 (
  id              INTEGER PRIMARY KEY,
  output_id       INTEGER NOT NULL REFERENCES outputs_v8(id),
  destination     TEXT NOT NULL,
  state           TEXT NOT NULL CHECK (state IN ('pending','sent','failed')),
  attempts        INTEGER NOT NULL DEFAULT 0,
  next_attempt_at TEXT NOT NULL,
  last_status     INTEGER,
  last_error      TEXT,
  updated_at      TEXT NOT NULL,
  UNIQUE (output_id, destination)
);
INSERT INTO deliveries_v8 SELECT id,output_id,destination,state,attempts,next_attempt_at,last_status,last_error,
  updated_at FROM deliveries;
DROP TABLE deliveries;
DROP TABLE outputs;
ALTER TABLE outputs_v8 RENAME TO outputs;
ALTER TABLE deliveries_v8 RENAME TO deliveries;
CREATE INDEX outputs_study ON outputs(study_uid);
CREATE INDEX deliveries_due ON deliveries(destination, state, next_attempt_at);
)SQL",
    };
    return m;
}

}  // namespace triage::storage
