#include "daemon/priority.h"

#include "core/analysis.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <cmath>

namespace triage::daemon {

std::set<std::string> outside_domain_series(const std::vector<storage::SeriesResult>& series) {
    std::set<std::string> out;
    for (const auto& s : series)
        for (const auto& w : s.warnings)
            if (w.rfind(core::kOutsideDomain, 0) == 0) out.insert(s.series_uid);
    return out;
}

StudyPriority score_study(const std::vector<storage::StoredFinding>& findings, const config::PriorityConfig& cfg,
                          const std::set<std::string>& outside_domain) {
    StudyPriority p;
    double best = 0;
    size_t scored = 0;
    for (const auto& sf : findings) {
        const core::Finding& f = sf.finding;
        if (outside_domain.count(f.series_uid)) {
            p.reasons.push_back(fmt::format("{} {:.0f} mm: not scored, its series is outside the model's validated domain",
                                            f.label, f.diameter_mm));
            continue;
        }
        ++scored;
        auto w = cfg.label_weights.find(f.label);
        double weight = w == cfg.label_weights.end() ? cfg.default_weight : w->second;
        bool large = f.diameter_mm >= cfg.large_lesion_mm;
        double score = (weight + (large ? cfg.large_lesion_bonus : 0)) * (0.5 + 0.5 * std::clamp(f.confidence, 0.0, 1.0));
        best = std::max(best, score);
        p.reasons.push_back(fmt::format("{} {:.0f} mm: weight {:.0f}{}, confidence {:.2f} -> {:.0f}", f.label,
                                        f.diameter_mm, weight,
                                        large ? fmt::format(" + {:.0f} (>= {:.0f} mm)", cfg.large_lesion_bonus,
                                                            cfg.large_lesion_mm)
                                              : "",
                                        f.confidence, score));
    }
    if (scored > 1) p.reasons.push_back(fmt::format("+5 for each of {} further findings", scored - 1));
    p.score = std::min(100.0, std::round(best + 5.0 * (scored == 0 ? 0 : scored - 1)));
    p.level = p.score >= cfg.critical_score ? "critical" : p.score >= cfg.urgent_score ? "urgent" : p.score > 0 ? "routine" : "normal";
    if (findings.empty()) p.reasons.push_back("no findings");
    return p;
}

std::string priority_text(const StudyPriority& p) {
    std::string reasons;
    for (const auto& r : p.reasons) reasons += (reasons.empty() ? "" : "; ") + r;
    return fmt::format("{} (score {:.0f}): {}", p.level, p.score, reasons);
}

int intake_priority(const config::PriorityConfig& cfg, const std::string& calling_ae, const std::string& description) {
    if (std::find(cfg.urgent_callers.begin(), cfg.urgent_callers.end(), calling_ae) != cfg.urgent_callers.end()) return 1;
    std::string upper = description;
    for (auto& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    for (const auto& k : cfg.stat_keywords) {
        std::string key = k;
        for (auto& c : key) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
        for (size_t at = upper.find(key); !key.empty() && at != std::string::npos; at = upper.find(key, at + 1)) {
            bool left = at == 0 || !std::isalnum(static_cast<unsigned char>(upper[at - 1]));
            size_t end = at + key.size();
            bool right = end >= upper.size() || !std::isalnum(static_cast<unsigned char>(upper[end]));
            if (left && right) return 1;  // whole word: "STAT" but not "STATIC"
        }
    }
    return 0;
}

}  // namespace triage::daemon
