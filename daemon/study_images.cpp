#include "daemon/study_images.h"

#include <nlohmann/json.hpp>

#include <filesystem>
#include <set>

#include "dicom_io/web_images.h"

namespace triage::daemon {

namespace {

constexpr size_t kCachedMaps = 4;  // a few series being scrolled at once

core::Error not_found(const std::string& what) { return core::make_error(core::ErrorKind::NotFound, what); }

core::Result<storage::AnalysisRecord> newest_analysis(storage::AnalysisStore& results, const std::string& study_uid) {
    auto a = results.latest(study_uid);
    if (!a) return a.error();
    if (!a.value()) return not_found("no analysis of study " + study_uid);
    return std::move(*a.value());
}

const storage::SeriesResult* pick_series(const storage::AnalysisRecord& a, const std::string& series_uid) {
    for (const auto& s : a.series)
        if (s.analyzed && (series_uid.empty() ? s.slices_json != "[]" : s.series_uid == series_uid)) return &s;
    return nullptr;
}

}  // namespace

core::Result<std::shared_ptr<const core::SegmentMap>> StudyImages::segments(const std::string& path) {
    std::lock_guard lock(m_mutex);
    for (auto it = m_cache.begin(); it != m_cache.end(); ++it)
        if (it->first == path) {
            m_cache.splice(m_cache.begin(), m_cache, it);
            return m_cache.front().second;
        }
    auto map = core::read_segment_map(path);
    if (!map) return map.error();
    m_cache.emplace_front(path, std::make_shared<const core::SegmentMap>(std::move(map.value())));
    if (m_cache.size() > kCachedMaps) m_cache.pop_back();
    return m_cache.front().second;
}

core::Result<std::string> StudyImages::slice_png(const std::string& study_uid, const std::string& series_uid, int n,
                                                 bool overlay) {
    auto a = newest_analysis(m_views.results, study_uid);
    if (!a) return a.error();
    const storage::SeriesResult* s = pick_series(a.value(), series_uid);
    if (!s) return not_found("no analyzed series " + series_uid + " in study " + study_uid);
    nlohmann::json slices = nlohmann::json::parse(s->slices_json, nullptr, false);
    if (!slices.is_array() || n < 0 || static_cast<size_t>(n) >= slices.size())
        return not_found("no slice " + std::to_string(n) + " in series " + s->series_uid);
    const auto& entry = slices[static_cast<size_t>(n)];
    auto path = m_views.index.instance_path(entry.at(0).get<std::string>());
    if (!path) return path.error();
    if (!path.value()) return not_found("the instance of slice " + std::to_string(n) + " is not stored");
    dicom_io::StoredSlice slice;
    slice.file = m_views.data_dir + "/" + *path.value();
    slice.frame = entry.size() > 1 ? entry.at(1).get<int>() : 0;
    if (std::error_code ec; !std::filesystem::exists(slice.file, ec))
        return not_found("the instances of study " + study_uid + " are no longer stored");
    if (auto series = m_views.index.list_series(study_uid); series)
        for (const auto& x : series.value())
            if (x.series_uid == s->series_uid && m_window)
                if (auto w = m_window(x)) slice.window_given = true, slice.window_low = w->first, slice.window_high = w->second;
    std::vector<std::uint8_t> mask;
    if (overlay && !s->segments_path.empty()) {
        std::set<int> reported;
        for (const auto& f : a->findings)
            if (f.finding.series_uid == s->series_uid) reported.insert(f.finding.segment);
        auto map = segments(m_views.data_dir + "/" + s->segments_path);
        if (!map) return map.error();
        const core::SegmentMap& m = *map.value();
        const size_t plane = static_cast<size_t>(m.rows) * m.columns;
        if (n < m.slices && m.values.size() >= plane * static_cast<size_t>(m.slices)) {
            mask.assign(plane, 0);
            const std::uint8_t* labels = m.values.data() + plane * static_cast<size_t>(n);
            for (size_t k = 0; k < plane; ++k) mask[k] = labels[k] != 0 && reported.count(labels[k]) ? 1 : 0;
            slice.mask = &mask;
        }
    }
    auto img = dicom_io::render_stored_slice(slice);
    if (!img) return img.error();
    return dicom_io::encode_png(img.value());
}

core::Result<std::string> StudyImages::key_image_png(const std::string& study_uid, int k) {
    auto a = newest_analysis(m_views.results, study_uid);
    if (!a) return a.error();
    int seen = 0;
    for (const auto& o : a->outputs) {
        if (o.kind != "keyimage") continue;
        if (seen++ != k) continue;
        auto img = dicom_io::read_rgb_instance(m_views.data_dir + "/" + o.path);
        if (!img) return img.error();
        return dicom_io::encode_png(img.value());
    }
    return not_found("no key image " + std::to_string(k) + " of study " + study_uid);
}

}  // namespace triage::daemon
