#pragma once
// The images of the worklist page, rendered by the node from what it stores: a slice of a study's
// analyzed series (sorted order, as the analysis saw it) through the key images' window, with the
// reported findings' outlines on request, and the study's key images, both as PNG. Thread-safe:
// a mutex guards the small cache of decoded segment maps.
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>

#include "core/result.h"
#include "core/segment_map.h"
#include "daemon/study_json.h"

namespace triage::daemon {

class StudyImages {
public:
    /// The display window of a series (CT: the analysis window of the loaded model); nullopt =
    /// from each slice's foreground, as the MR key images.
    using WindowFor = std::function<std::optional<std::pair<double, double>>(const storage::SeriesSummary&)>;

    StudyImages(StateViews views, WindowFor window) : m_views(views), m_window(std::move(window)) {}

    /// PNG of slice `n` (0-based, sorted) of `series_uid` ("" = the study's first analyzed series)
    /// of the study's newest analysis; `overlay` outlines the reported findings in yellow.
    /// NotFound: no such study, analysis, series or slice, or the instances were purged.
    core::Result<std::string> slice_png(const std::string& study_uid, const std::string& series_uid, int n, bool overlay);
    /// PNG of the k-th key image (0-based, output order = finding order) of the newest analysis.
    core::Result<std::string> key_image_png(const std::string& study_uid, int k);

private:
    core::Result<std::shared_ptr<const core::SegmentMap>> segments(const std::string& path);

    StateViews m_views;
    WindowFor m_window;
    std::mutex m_mutex;
    std::list<std::pair<std::string, std::shared_ptr<const core::SegmentMap>>> m_cache;  // newest first
};

}  // namespace triage::daemon
