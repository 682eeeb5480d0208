#pragma once
// Worklist priority from an analysis' findings, and the queue priority of a study at reception
// (config [priority]; docs/configuration.md explains the score).
#include <set>
#include <string>
#include <vector>

#include "config/config.h"
#include "storage/analysis_store.h"

namespace triage::daemon {

struct StudyPriority {
    double score = 0;            // 0-100
    std::string level;           // critical | urgent | routine | normal
    std::vector<std::string> reasons;
};

/// Per finding: (label weight + size bonus) x (0.5 + 0.5 x confidence); the study takes its
/// highest finding plus 5 per further finding, at most 100. No findings: 0, "normal".
/// Findings of a series in `outside_domain` (series uids whose input was outside the model's
/// validated domain) score 0 and say why: the priority does not rise on them alone.
StudyPriority score_study(const std::vector<storage::StoredFinding>& findings, const config::PriorityConfig& cfg,
                          const std::set<std::string>& outside_domain = {});
/// The series whose warnings say their input was outside the model's validated domain.
std::set<std::string> outside_domain_series(const std::vector<storage::SeriesResult>& series);

/// "urgent (score 78): lung tumor 64 mm: weight 70 + 15 (>= 30 mm), confidence 0.99 -> 85" (SR text).
std::string priority_text(const StudyPriority& p);

/// 1 when a study should jump the analysis queue (an urgent calling AE, or a STAT keyword in the
/// study or requested procedure description), else 0.
int intake_priority(const config::PriorityConfig& cfg, const std::string& calling_ae, const std::string& description);

}  // namespace triage::daemon
