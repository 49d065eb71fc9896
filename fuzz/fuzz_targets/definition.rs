//! Dataset definitions as TOML or JSON (the API and `datasets create` take them): parsed,
//! checked, and, when valid, turned into their Arrow schema; never a panic.
#![no_main]

use citybrain_hub::DatasetDef;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for hint in ["d.toml", "d.json"] {
        if let Ok(def) = DatasetDef::from_file_text(hint, text)
            && def.check().is_empty()
        {
            let schema = def.arrow_schema();
            assert!(schema.fields().len() > def.fields.len());
            let _ = def.check_change_from(&def);
        }
    }
});
