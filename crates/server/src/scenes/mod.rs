//! The scenes, listed once. Adding one: a module here (or a crate of its own with a thin
//! module here), one line in [`all`], a cockpit folder and one line in `cockpit/src/pages.ts`
//! (see ARCHITECTURE.md, "Adding a scene").

pub mod alerts;
pub mod forms;
pub mod indices;
pub mod medical;
pub mod parking;
pub mod paylater;
pub mod policy;
pub mod services;
pub mod signals;
pub mod thresholds;
pub mod verify;
pub mod warnings;

use crate::scene::Scene;

/// Every scene, in start order: the alert board's scene first, since the others raise
/// alerts on it from their first batch.
pub fn all() -> Vec<Box<dyn Scene>> {
    vec![
        Box::new(alerts::AlertsScene),
        Box::new(indices::IndicesScene),
        Box::new(parking::ParkingScene),
        Box::new(signals::SignalsScene),
        Box::new(policy::PolicyDelivery),
        Box::new(medical::MedicalScene),
        Box::new(paylater::PayLaterScene),
        Box::new(services::ServicesScene),
        Box::new(verify::VerifyScene),
        Box::new(warnings::WarningsScene),
        Box::new(forms::FormsScene),
        Box::new(thresholds::ThresholdsScene::default()),
    ]
}

/// Creates every scene's datasets that do not exist yet (the server does this at start
/// too; a setup that grants access to them needs them first).
pub fn create_datasets(hub: &citybrain_hub::Hub) -> Result<(), String> {
    all()
        .iter()
        .try_for_each(|scene| crate::scene::create_definitions(hub, scene.as_ref()))
}
