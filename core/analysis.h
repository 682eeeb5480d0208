#pragma once
// What the analysis pipeline produces for a series and a study (plain data).
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace triage::core {

/// A coded concept (Code Sequence Macro): e.g. {"SCT", "10200004", "Liver"}.
struct CodedConcept {
    std::string scheme, value, meaning;
};

struct Finding {
    std::string label;        // model vocabulary text, e.g. "liver tumor"
    std::string series_uid;
    int segment = 0;          // 1-based number in the series' segment map (SEG segment number)
    double volume_ml = 0, diameter_mm = 0, confidence = 0, mean_value = 0;  // mean HU for CT
    int first_slice = 0, last_slice = 0, key_slice = 0;  // indices into the sorted volume
    std::string side;         // "right" | "left" | "" (patient side)
    std::string description;  // one sentence, measurements from the mask
    std::string grounding;    // how the label was decided (audit), e.g. "recognized: pancreas tumor; host organ ..."
};

/// Series warning prefixes: written by the analyzer, read back by the study JSON and the priority.
inline constexpr std::string_view kOutsideDomain = "outside the model's validated domain: ";
inline constexpr std::string_view kTimeBudget = "time budget: ";

struct SeriesAnalysis {
    std::string series_uid;
    std::vector<Finding> findings;
    std::vector<std::uint8_t> segments;  // slices*rows*columns; 0 = none, k = findings[k-1]
    std::vector<std::string> slice_texts;  // the generated answer per slice, verbatim
    std::vector<std::string> rejected;     // candidates segmented by the model but not reported, and why
    std::vector<std::string> warnings;     // about the whole series: outside the validated domain, time budget
    bool outside_domain = false;           // the input is outside the domain the model was validated on
    bool time_budget_exceeded = false;     // the analysis stopped at its time budget with what it had
    // Stages: preprocess, vision (the image encoders: the MLLM's and the grounding one), decode (the
    // language model), mask (the mask decoder).
    double seconds_preprocess = 0, seconds_vision = 0, seconds_decode = 0, seconds_mask = 0;
};

struct StudyReport {
    std::string findings;    // one paragraph per finding, or "No findings in the examined <region>."
    std::string impression;
};

}  // namespace triage::core
