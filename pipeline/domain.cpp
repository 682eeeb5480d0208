#include "pipeline/domain.h"

#include <nlohmann/json.hpp>

namespace triage::pipeline {

core::Result<Domain> parse_domain(const std::string& json_text) {
    auto bad = [](const std::string& field, const std::string& why) {
        return core::make_error(core::ErrorKind::InvalidInput, "model.json domain." + field + ": " + why);
    };
    try {
        const auto j = nlohmann::json::parse(json_text);
        Domain d;
        d.description = j.at("description").get<std::string>();
        d.axial_only = j.value("axial_only", false);
        d.max_candidates = j.value("max_candidates", 0);
        if (d.max_candidates < 0) return bad("max_candidates", "must be 0 or more");
        for (const char* mod : {"CT", "MR"}) {
            if (!j.contains(mod)) continue;
            const auto& r = j.at(mod);
            DomainRange range;
            range.pixel_spacing_mm = r.value("pixel_spacing_mm", range.pixel_spacing_mm);
            range.slice_spacing_mm = r.value("slice_spacing_mm", range.slice_spacing_mm);
            range.max_texture_ratio = r.value("max_texture_ratio", 0.0);
            range.skip_texture_ratio = r.value("skip_texture_ratio", 0.0);
            if (range.skip_texture_ratio < 0 || (range.skip_texture_ratio > 0 && range.skip_texture_ratio < range.max_texture_ratio))
                return bad(std::string(mod) + ".skip_texture_ratio", "must be 0 (off) or at least max_texture_ratio");
            range.regions = r.value("regions", range.regions);
            for (const auto& region : range.regions)
                if (region != "HEAD" && region != "CHEST" && region != "ABDOMEN")
                    return bad(std::string(mod) + ".regions", "unknown region " + region + " (HEAD, CHEST, ABDOMEN)");
            for (const auto& [name, p] : {std::pair{"pixel_spacing_mm", range.pixel_spacing_mm},
                                          std::pair{"slice_spacing_mm", range.slice_spacing_mm}})
                if (p.first < 0 || p.second < p.first) return bad(std::string(mod) + "." + name, "must be [low, high], 0 <= low <= high");
            d.modality[mod] = range;
        }
        return d;
    } catch (const std::exception& e) {
        return bad("", e.what());
    }
}

}  // namespace triage::pipeline
