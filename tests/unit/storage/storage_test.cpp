#include <gtest/gtest.h>
#include <sqlite3.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <memory>

#include "storage/audit_log.h"
#include "storage/database.h"
#include "storage/instance_index.h"
#include "storage/job_queue.h"
#include "storage/schema.h"

using namespace triage;
using namespace triage::storage;

namespace {

class StorageTest : public ::testing::Test {
protected:
    void SetUp() override {
        m_dir = std::filesystem::temp_directory_path() /
                ("triage-storage-" + std::to_string(::getpid()) + "-" +
                 ::testing::UnitTest::GetInstance()->current_test_info()->name());
        std::filesystem::remove_all(m_dir);
        std::filesystem::create_directories(m_dir);
        reopen();
    }
    void TearDown() override {
        close();
        std::filesystem::remove_all(m_dir);
    }
    void close() {
        jobs.reset();
        index.reset();
        audit.reset();
        db.reset();
    }
    void reopen() {
        close();
        db = std::move(Database::open((m_dir / "triage.db").string(), SyncMode::Normal).value());
        audit = std::make_unique<AuditLog>(*db, clock);
        index = std::make_unique<InstanceIndex>(*db, *audit, clock);
        jobs = std::make_unique<JobQueue>(*db, *audit, clock);
    }
    InstanceRecord instance(const std::string& study, const std::string& sop) {
        InstanceRecord r;
        r.study_uid = study;
        r.series_uid = study + ".1";
        r.sop_instance_uid = sop;
        r.sop_class_uid = "1.2.840.10008.5.1.4.1.1.2";
        r.transfer_syntax_uid = "1.2.840.10008.1.2.1";
        r.patient_id = "P1";
        r.modality = "CT";
        r.file_path = "instances/" + sop + ".dcm";
        r.file_size = 100;
        return r;
    }
    std::string cutoff(int seconds_ago) {
        return core::format_iso8601(clock.now() - std::chrono::seconds(seconds_ago));
    }

    std::filesystem::path m_dir;
    core::FakeClock clock{*core::parse_iso8601("2026-11-27T10:00:00Z")};
    std::unique_ptr<Database> db;
    std::unique_ptr<AuditLog> audit;
    std::unique_ptr<InstanceIndex> index;
    std::unique_ptr<JobQueue> jobs;
};

TEST_F(StorageTest, MigratesToCurrentVersionAndReopens) {
    EXPECT_EQ(db->schema_version(), static_cast<int>(migrations().size()));
    reopen();
    EXPECT_EQ(db->schema_version(), static_cast<int>(migrations().size()));
    EXPECT_TRUE(Database::open_existing((m_dir / "triage.db").string()));
    EXPECT_FALSE(Database::open_existing((m_dir / "missing.db").string()));
}

TEST_F(StorageTest, DuplicateInstanceIsIdempotent) {
    auto first = index->record_instance(instance("1.1", "1.1.1.1"), "TRIAGE");
    ASSERT_TRUE(first);
    EXPECT_FALSE(first->duplicate);
    auto again = index->record_instance(instance("1.1", "1.1.1.1"), "TRIAGE");
    ASSERT_TRUE(again);
    EXPECT_TRUE(again->duplicate);
    EXPECT_FALSE(again->previous_path);
    auto study = index->get_study("1.1");
    ASSERT_TRUE(study);
    EXPECT_EQ(study->instance_count, 1);
    EXPECT_EQ(study->series_count, 1);
    EXPECT_EQ(study->state, "receiving");
    EXPECT_EQ(study->modalities, std::vector<std::string>{"CT"});
}

TEST_F(StorageTest, QuietStudyCompletesOnceAndLateInstanceQueuesNewVersion) {
    ASSERT_TRUE(index->record_instance(instance("1.2", "1.2.1"), "T"));
    EXPECT_TRUE(index->studies_quiet_since(cutoff(30))->empty());
    clock.advance(std::chrono::seconds(31));
    auto due = index->studies_quiet_since(cutoff(30));
    ASSERT_EQ(due->size(), 1u);
    auto job = jobs->complete_study("1.2", cutoff(30), "quiet");
    ASSERT_TRUE(job && job.value());
    EXPECT_EQ(job.value()->version, 1);
    EXPECT_TRUE(index->studies_quiet_since(cutoff(30))->empty());  // no double fire
    EXPECT_EQ(index->get_study("1.2")->state, "queued");

    // A late instance re-arms; while v1 is still queued no second job is added.
    ASSERT_TRUE(index->record_instance(instance("1.2", "1.2.2"), "T"));
    clock.advance(std::chrono::seconds(31));
    auto none = jobs->complete_study("1.2", cutoff(30), "quiet");
    ASSERT_TRUE(none);
    EXPECT_FALSE(none.value());

    // v1 runs; another late instance queues v2, which cannot start while v1 runs.
    auto running = jobs->claim();
    ASSERT_TRUE(running && running.value());
    EXPECT_EQ(running.value()->attempts, 1);
    ASSERT_TRUE(index->record_instance(instance("1.2", "1.2.3"), "T"));
    clock.advance(std::chrono::seconds(31));
    auto v2 = jobs->complete_study("1.2", cutoff(30), "quiet");
    ASSERT_TRUE(v2 && v2.value());
    EXPECT_EQ(v2.value()->version, 2);
    EXPECT_FALSE(jobs->claim().value());  // one job per study at a time
    ASSERT_TRUE(jobs->finish(running.value()->id, true, ""));
    EXPECT_FALSE(jobs->finish(running.value()->id, true, ""));  // only running -> done
    auto next = jobs->claim();
    ASSERT_TRUE(next.value());
    EXPECT_EQ(next.value()->version, 2);
}

TEST_F(StorageTest, InstanceAfterCutoffBlocksCompletion) {
    ASSERT_TRUE(index->record_instance(instance("1.3", "1.3.1"), "T"));
    std::string old_cutoff = cutoff(0);
    clock.advance(std::chrono::seconds(5));
    ASSERT_TRUE(index->record_instance(instance("1.3", "1.3.2"), "T"));
    auto job = jobs->complete_study("1.3", old_cutoff, "quiet");
    ASSERT_TRUE(job);
    EXPECT_FALSE(job.value());
    EXPECT_EQ(index->get_study("1.3")->state, "receiving");
}

TEST_F(StorageTest, ForcedCompletionAndUnknownStudy) {
    ASSERT_TRUE(index->record_instance(instance("1.4", "1.4.1"), "T"));
    auto job = jobs->complete_study("1.4", std::nullopt, "forced");
    ASSERT_TRUE(job && job.value());
    auto missing = jobs->complete_study("9.9", std::nullopt, "forced");
    ASSERT_FALSE(missing);
    EXPECT_EQ(missing.error().kind, core::ErrorKind::NotFound);
    EXPECT_EQ(jobs->reprocess("9.9").error().kind, core::ErrorKind::NotFound);
}

TEST_F(StorageTest, RunningJobsReturnToQueueAfterRestart) {
    ASSERT_TRUE(index->record_instance(instance("1.5", "1.5.1"), "T"));
    ASSERT_TRUE(jobs->complete_study("1.5", std::nullopt, "forced"));
    ASSERT_TRUE(jobs->claim().value());
    reopen();
    EXPECT_EQ(jobs->reset_running().value(), 1);
    auto all = jobs->jobs_for_study("1.5").value();
    ASSERT_EQ(all.size(), 1u);
    EXPECT_EQ(all[0].state, "queued");
    EXPECT_EQ(jobs->claim().value()->attempts, 2);
}

TEST_F(StorageTest, FailedJobKeepsItsError) {
    ASSERT_TRUE(index->record_instance(instance("1.6", "1.6.1"), "T"));
    ASSERT_TRUE(jobs->complete_study("1.6", std::nullopt, "forced"));
    auto j = jobs->claim().value();
    ASSERT_TRUE(jobs->finish(j->id, false, "no analyzable series"));
    auto all = jobs->jobs_for_study("1.6").value();
    EXPECT_EQ(all[0].state, "failed");
    EXPECT_EQ(all[0].error.value_or(""), "no analyzable series");
    EXPECT_EQ(index->get_study("1.6")->state, "failed");
}

TEST_F(StorageTest, AuditTrailIsAppendOnly) {
    ASSERT_TRUE(index->record_instance(instance("1.7", "1.7.1"), "T"));
    auto events = audit->list("");
    ASSERT_TRUE(events);
    ASSERT_FALSE(events->empty());
    EXPECT_EQ(events->back().event, "instance_stored");
    EXPECT_FALSE(db->exec("UPDATE audit_events SET event='x'"));
    EXPECT_FALSE(db->exec("DELETE FROM audit_events"));
    EXPECT_EQ(audit->list("")->size(), events->size());
    EXPECT_TRUE(audit->list("2099-01-01T00:00:00.000Z")->empty());
}

}  // namespace

namespace {
TEST_F(StorageTest, ReadsLeaveNoSnapshotThatBlocksLaterWrites) {
    // triagectl (another connection) writes between the node's reads and writes.
    ASSERT_TRUE(index->record_instance(instance("2.1", "2.1.1"), "T"));
    ASSERT_TRUE(index->record_instance(instance("2.2", "2.2.1"), "T"));
    ASSERT_TRUE(index->get_study("2.1"));  // stops after one row
    ASSERT_TRUE(jobs->jobs_for_study("2.1"));
    auto other = Database::open_existing((m_dir / "triage.db").string());
    ASSERT_TRUE(other);
    ASSERT_TRUE(other.value()->exec("UPDATE studies SET accession='X' WHERE study_uid='2.2'"));
    EXPECT_TRUE(index->record_instance(instance("2.1", "2.1.2"), "T"));
    EXPECT_TRUE(jobs->complete_study("2.1", std::nullopt, "forced"));
}
}  // namespace

#include "storage/analysis_store.h"
#include "storage/delivery_queue.h"

namespace {
TEST_F(StorageTest, AnalysisIsSavedOnceWithOutputsAndDeliveriesAndReadBack) {
    ASSERT_TRUE(index->record_instance(instance("3.1", "3.1.1"), "T"));
    auto job = jobs->complete_study("3.1", std::nullopt, "forced").value().value();
    AnalysisStore store(*db, *audit, clock);
    AnalysisRecord r;
    r.job_id = job.id;
    r.study_uid = "3.1";
    r.model_name = "unibiomed-mini";
    r.model_version = "0.1.0";
    r.model_sha256 = std::string(64, 'a');
    r.report = {"Liver tumor ...", "1 lesion"};
    r.series.push_back({"3.1.1", true, "", {"gap"}, "[[\"3.1.1\",0]]", "results/x.seg"});
    r.series.push_back({"3.1.9", false, "image type LOCALIZER is not analyzed", {}, "[]", ""});
    StoredFinding f;
    f.finding.label = "liver tumor";
    f.finding.series_uid = "3.1.1";
    f.finding.segment = 1;
    f.finding.volume_ml = 12.5;
    f.finding.grounding = "recognized: pancreas tumor; host organ ring 5 mm: liver 0.61 -> liver tumor";
    f.code = "108369006";
    r.findings.push_back(f);
    r.outputs.push_back({0, "seg", "3.1.50", "3.1.1", "1.2.840.10008.5.1.4.1.1.66.4", "3.1.50.1", "outputs/seg.dcm", 7,
                         {"pacs", "archive"}});
    r.outputs.push_back({0, "sr", "3.1.51", "", "1.2.840.10008.5.1.4.1.1.88.22", "3.1.51.1", "outputs/sr.dcm", 0, {"pacs"}});
    EXPECT_FALSE(store.has_results(job.id).value());
    ASSERT_TRUE(store.save(r));
    EXPECT_TRUE(store.has_results(job.id).value());
    EXPECT_FALSE(store.save(r));  // saved once: a second save of the job fails and changes nothing
    auto back = store.latest("3.1");
    ASSERT_TRUE(back && back.value());
    const AnalysisRecord& a = *back.value();
    EXPECT_EQ(a.findings.size(), 1u);
    EXPECT_EQ(a.findings[0].finding.label, "liver tumor");
    EXPECT_DOUBLE_EQ(a.findings[0].finding.volume_ml, 12.5);
    EXPECT_EQ(a.findings[0].finding.grounding, r.findings[0].finding.grounding);
    ASSERT_EQ(a.series.size(), 2u);
    EXPECT_EQ(a.series[0].warnings, std::vector<std::string>{"gap"});
    EXPECT_EQ(a.report.impression, "1 lesion");
    ASSERT_EQ(a.outputs.size(), 2u);
    EXPECT_EQ(a.outputs[0].sop_instance_uid, "3.1.50.1");
    EXPECT_EQ(a.outputs[0].frames, 7);
    EXPECT_FALSE(store.latest("9.9").value());

    DeliveryQueue queue(*db, *audit, clock);
    auto all = queue.for_study("3.1").value();
    ASSERT_EQ(all.size(), 3u);
    EXPECT_TRUE(std::all_of(all.begin(), all.end(), [](const Delivery& d) { return d.state == "pending"; }));
    auto due = queue.due("pacs", 10).value();
    ASSERT_EQ(due.size(), 2u);
    EXPECT_EQ(due[0].path, "outputs/seg.dcm");
    // seg: transient failure, retried later; sr: sent.
    ASSERT_TRUE(queue.record(due[0], {Attempt::Outcome::Retry, -1, "connection refused", clock.now() + std::chrono::seconds(30)}));
    ASSERT_TRUE(queue.record(due[1], {Attempt::Outcome::Sent, 0, "", {}}));
    EXPECT_TRUE(queue.due("pacs", 10).value().empty());
    EXPECT_NEAR(queue.seconds_until_due("pacs").value().value(), 30, 0.01);
    clock.advance(std::chrono::seconds(31));
    due = queue.due("pacs", 10).value();
    ASSERT_EQ(due.size(), 1u);
    EXPECT_EQ(due[0].attempts, 1);
    EXPECT_EQ(due[0].last_error, "connection refused");
    ASSERT_TRUE(queue.record(due[0], {Attempt::Outcome::Failed, 0xA900, "C-STORE status 0xA900", {}}));
    ASSERT_TRUE(queue.record(due[0], {Attempt::Outcome::Sent, 0, "", {}}));  // stale: already failed, ignored
    auto archive = queue.due("archive", 10).value();
    ASSERT_EQ(archive.size(), 1u);
    ASSERT_TRUE(queue.record(archive[0], {Attempt::Outcome::Failed, -1, "association rejected", {}}));
    EXPECT_EQ(queue.retry_failed(std::string("pacs")).value(), 1);  // only that destination's
    auto again = queue.due("pacs", 10).value();
    ASSERT_EQ(again.size(), 1u);
    EXPECT_EQ(again[0].attempts, 0);
    EXPECT_EQ(queue.retry_failed(std::nullopt).value(), 1);
    std::vector<std::string> counts;
    auto count_rows = queue.counts().value();
    for (const auto& c : count_rows)
        counts.push_back(c.destination + " " + c.state + (c.retrying ? " retrying " : " ") + std::to_string(c.count));
    EXPECT_EQ(counts, (std::vector<std::string>{"archive pending 1", "pacs pending 1", "pacs sent 1"}));
    auto events = audit->list("").value();
    int attempts = 0;
    for (const auto& e : events) attempts += e.event == "delivery_attempt";
    EXPECT_EQ(attempts, 4);  // the stale record wrote nothing

    // "archive" removed from the config: its pending delivery fails with the reason, "pacs" waits on.
    EXPECT_EQ(queue.fail_unconfigured({"pacs"}).value(), 1);
    auto archived = queue.for_study("3.1").value();
    auto gone = std::find_if(archived.begin(), archived.end(), [](const Delivery& d) { return d.destination == "archive"; });
    ASSERT_NE(gone, archived.end());
    EXPECT_EQ(gone->state, "failed");
    EXPECT_EQ(gone->last_error, "destination archive is no longer configured");
    EXPECT_EQ(queue.due("pacs", 10).value().size(), 1u);
    EXPECT_EQ(queue.fail_unconfigured({"pacs"}).value(), 0);
}
}  // namespace

namespace {
TEST_F(StorageTest, InstancePathOfOneInstance) {
    ASSERT_TRUE(index->record_instance(instance("4.1", "4.1.1"), "T"));
    EXPECT_EQ(index->instance_path("4.1.1").value(), std::optional<std::string>("instances/4.1.1.dcm"));
    EXPECT_FALSE(index->instance_path("4.1.9").value());
}
}  // namespace

namespace {
TEST_F(StorageTest, StudiesFlaggedUrgentAtReceptionAreClaimedFirst) {
    ASSERT_TRUE(index->record_instance(instance("5.1", "5.1.1"), "T"));  // routine, completed first
    auto urgent = instance("5.2", "5.2.1");
    urgent.study_description = "CT CHEST STAT";
    urgent.intake_priority = 1;
    ASSERT_TRUE(index->record_instance(urgent, "T"));
    ASSERT_TRUE(index->record_instance(instance("5.2", "5.2.2"), "T"));  // later routine instance: stays urgent
    ASSERT_TRUE(jobs->complete_study("5.1", std::nullopt, "forced"));
    ASSERT_TRUE(jobs->complete_study("5.2", std::nullopt, "forced"));
    auto first = jobs->claim().value();
    ASSERT_TRUE(first);
    EXPECT_EQ(first->study_uid, "5.2");
    EXPECT_EQ(first->priority, 1);
    auto s = index->get_study("5.2").value();
    EXPECT_EQ(s.intake_priority, 1);
    EXPECT_EQ(s.study_description, "CT CHEST STAT");
    EXPECT_EQ(jobs->claim().value()->study_uid, "5.1");
}
}  // namespace

#include "storage/retention.h"

namespace {
TEST_F(StorageTest, RetentionPurgesOnlySettledStudiesAndAuditsIt) {
    for (const char* s : {"6.1", "6.2", "6.3"}) {
        ASSERT_TRUE(index->record_instance(instance(s, std::string(s) + ".9"), "T"));
        ASSERT_TRUE(jobs->complete_study(s, std::nullopt, "forced"));
    }
    AnalysisStore store(*db, *audit, clock);
    DeliveryQueue queue(*db, *audit, clock);
    Retention retention(*db, *audit, clock);
    for (int k = 0; k < 3; ++k) {  // 6.2 stays running
        auto job = jobs->claim().value().value();
        if (job.study_uid == "6.2") continue;
        AnalysisRecord r;
        r.job_id = job.id;
        r.study_uid = job.study_uid;
        r.model_name = "m";
        r.model_version = "1";
        r.model_sha256 = "x";
        r.outputs.push_back({0, "sr", job.study_uid + ".50", "", "1.2.840.10008.5.1.4.1.1.88.22", job.study_uid + ".50.1",
                             "outputs/sr.dcm", 0, {"pacs"}});
        ASSERT_TRUE(store.save(r));
        ASSERT_TRUE(jobs->finish(job.id, true, ""));
    }
    auto now = [&] { return core::format_iso8601(clock.now()); };
    EXPECT_TRUE(retention.instances_to_purge(now(), 10).value().empty());  // deliveries pending
    auto pending = queue.due("pacs", 10).value();
    for (const auto& d : pending) ASSERT_TRUE(queue.record(d, {Attempt::Outcome::Sent, 0, "", {}}));
    ASSERT_TRUE(index->record_instance(instance("6.3", "6.3.10"), "T"));  // a late instance: 6.3 is receiving again
    clock.advance(std::chrono::hours(48));
    std::string day_ago = core::format_iso8601(clock.now() - std::chrono::hours(24));
    auto due = retention.instances_to_purge(day_ago, 10).value();
    ASSERT_EQ(due.size(), 1u);
    EXPECT_EQ(due[0].study_uid, "6.1");
    EXPECT_EQ(due[0].instance_bytes, 100);
    auto files = retention.purge_instances("6.1", "age").value();
    EXPECT_EQ(files, std::vector<std::string>{"instances/6.1.9.dcm"});
    EXPECT_EQ(index->get_study("6.1").value().instance_count, 0);
    EXPECT_TRUE(retention.instances_to_purge(day_ago, 10).value().empty());
    EXPECT_TRUE(retention.purge_instances("6.2", "age").value().empty());  // not settled: nothing happens
    EXPECT_EQ(index->get_study("6.2").value().instance_count, 1);
    auto studies = retention.studies_to_purge(day_ago, 10).value();
    ASSERT_EQ(studies.size(), 1u);
    EXPECT_EQ(retention.purge_study("6.1", "age").value().size(), 3u);
    EXPECT_FALSE(index->get_study("6.1"));
    int purges = 0, trail = 0;
    auto trail_rows = audit->list("").value();
    for (const auto& e : trail_rows) {
        purges += e.event == "instances_purged" || e.event == "study_purged";
        trail += e.study_uid == std::optional<std::string>("6.1");
    }
    EXPECT_EQ(purges, 2);
    EXPECT_GT(trail, 4);  // the study's audit trail outlives the study
}
}  // namespace

namespace {
/// A database left at schema v7 (outputs limited to seg/sr) with one SEG and its pending delivery.
void make_v7_database(const std::string& path) {
    sqlite3* raw = nullptr;
    ASSERT_EQ(sqlite3_open(path.c_str(), &raw), SQLITE_OK);
    std::unique_ptr<sqlite3, int (*)(sqlite3*)> db(raw, sqlite3_close);
    for (size_t i = 0; i < 7; ++i) ASSERT_EQ(sqlite3_exec(raw, migrations()[i].c_str(), nullptr, nullptr, nullptr), SQLITE_OK) << i;
    const char* rows = R"SQL(
PRAGMA user_version=7;
INSERT INTO studies(study_uid,first_received_at,last_received_at) VALUES ('4.1','t','t');
INSERT INTO jobs(id,study_uid,version,state,created_at) VALUES (1,'4.1',1,'done','t');
INSERT INTO outputs(id,job_id,study_uid,kind,series_uid,sop_class_uid,sop_instance_uid,path,created_at)
  VALUES (5,1,'4.1','seg','4.1.50','1.2.840.10008.5.1.4.1.1.66.4','4.1.50.1','outputs/seg.dcm','t');
INSERT INTO deliveries(output_id,destination,state,attempts,next_attempt_at,updated_at)
  VALUES (5,'pacs','pending',2,'2026-11-27T09:00:00Z','t');
)SQL";
    ASSERT_EQ(sqlite3_exec(raw, rows, nullptr, nullptr, nullptr), SQLITE_OK) << sqlite3_errmsg(raw);
}
}  // namespace

TEST_F(StorageTest, V8KeepsOutputsAndDeliveriesAndTakesKeyImagesAndKos) {
    close();
    std::filesystem::remove(m_dir / "triage.db");
    make_v7_database((m_dir / "triage.db").string());
    reopen();  // migrates to the current version
    EXPECT_EQ(db->schema_version(), static_cast<int>(migrations().size()));
    DeliveryQueue queue(*db, *audit, clock);
    auto kept = queue.due("pacs", 10).value();
    ASSERT_EQ(kept.size(), 1u);
    EXPECT_EQ(kept[0].kind, "seg");
    EXPECT_EQ(kept[0].attempts, 2);
    EXPECT_EQ(kept[0].sop_instance_uid, "4.1.50.1");

    ASSERT_TRUE(index->record_instance(instance("4.2", "4.2.1"), "T"));
    auto job = jobs->complete_study("4.2", std::nullopt, "forced").value().value();
    AnalysisRecord r;
    r.job_id = job.id;
    r.study_uid = "4.2";
    r.model_name = "m";
    r.model_version = "1";
    r.model_sha256 = std::string(64, 'b');
    r.outputs.push_back({0, "keyimage", "4.2.60", "4.2.1", "1.2.840.10008.5.1.4.1.1.7", "4.2.60.1", "outputs/key-1.dcm", 0, {"pacs"}});
    r.outputs.push_back({0, "kos", "4.2.61", "", "1.2.840.10008.5.1.4.1.1.88.59", "4.2.61.1", "outputs/kos.dcm", 0, {"pacs"}});
    AnalysisStore store(*db, *audit, clock);
    ASSERT_TRUE(store.save(r));
    auto sent = queue.for_study("4.2").value();
    ASSERT_EQ(sent.size(), 2u);
    std::vector<std::string> kinds{sent[0].kind, sent[1].kind};
    std::sort(kinds.begin(), kinds.end());
    EXPECT_EQ(kinds, (std::vector<std::string>{"keyimage", "kos"}));
    r.outputs = {{0, "pdf", "4.2.62", "", "1.2", "4.2.62.1", "outputs/x.pdf", 0, {}}};
    ASSERT_TRUE(index->record_instance(instance("4.3", "4.3.1"), "T"));
    r.job_id = jobs->complete_study("4.3", std::nullopt, "forced").value().value().id;
    r.study_uid = "4.3";
    EXPECT_FALSE(store.save(r));  // the kinds stay checked
}

namespace {
// What the worklist page polls and filters: the newest audit id moves with every audited change;
// one study's events; per study the key images of its newest analysis.
TEST_F(StorageTest, AuditVersionStudyFilterAndKeyImageCounts) {
    EXPECT_EQ(audit->latest_id().value(), 0);
    ASSERT_TRUE(index->record_instance(instance("8.1", "8.1.1"), "T"));
    const std::int64_t v1 = audit->latest_id().value();
    EXPECT_GT(v1, 0);
    ASSERT_TRUE(index->record_instance(instance("8.2", "8.2.1"), "T"));
    EXPECT_GT(audit->latest_id().value(), v1);
    auto one = audit->list_for_study("8.1", "").value();
    ASSERT_FALSE(one.empty());
    EXPECT_TRUE(std::all_of(one.begin(), one.end(), [](const AuditEvent& e) { return e.study_uid == "8.1"; }));
    EXPECT_TRUE(audit->list_for_study("8.1", "2099-01-01T00:00:00.000Z").value().empty());
    EXPECT_TRUE(audit->list_for_study("9.9", "").value().empty());

    AnalysisStore store(*db, *audit, clock);
    EXPECT_TRUE(store.key_image_counts().value().empty());
    auto save = [&](const std::string& study, int key_images) {
        auto job = jobs->complete_study(study, std::nullopt, "forced").value().value();
        ASSERT_TRUE(jobs->claim().value());
        AnalysisRecord r;
        r.job_id = job.id;
        r.study_uid = study;
        r.model_name = "m";
        r.model_version = "1";
        r.model_sha256 = std::string(64, 'a');
        for (int k = 0; k < key_images; ++k)
            r.outputs.push_back({0, "keyimage", study + ".70", study + ".1", "1.2.840.10008.5.1.4.1.1.7",
                                 study + ".70." + std::to_string(job.id) + "." + std::to_string(k), "outputs/k.dcm", 0, {}});
        ASSERT_TRUE(store.save(r));
        ASSERT_TRUE(jobs->finish(job.id, true, ""));
    };
    save("8.1", 2);
    save("8.2", 0);
    EXPECT_EQ(store.key_image_counts().value(), (std::map<std::string, int>{{"8.1", 2}}));
    save("8.1", 1);  // a newer analysis counts alone
    EXPECT_EQ(store.key_image_counts().value(), (std::map<std::string, int>{{"8.1", 1}}));
}
}  // namespace
