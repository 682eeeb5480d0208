#pragma once
// The shared DICOM corpus (../shared/data/dicom) for the dicom_io tests.
#include <algorithm>
#include <filesystem>
#include <string>
#include <vector>

namespace triage::test {

inline const std::filesystem::path kCorpus = std::filesystem::path(TRIAGE_SHARED_DIR) / "data" / "dicom";

/// The DICOM files of a corpus folder (not its README/manifest), sorted; `recursive` descends.
inline std::vector<std::string> corpus_files(const std::filesystem::path& dir, bool recursive) {
    std::vector<std::string> out;
    auto take = [&](const std::filesystem::directory_entry& e) {
        auto ext = e.path().extension();
        if (e.is_regular_file() && ext != ".md" && ext != ".tsv") out.push_back(e.path().string());
    };
    if (recursive) {
        for (const auto& e : std::filesystem::recursive_directory_iterator(dir)) take(e);
    } else {
        for (const auto& e : std::filesystem::directory_iterator(dir)) take(e);
    }
    std::sort(out.begin(), out.end());
    return out;
}

}  // namespace triage::test
