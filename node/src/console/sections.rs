//! A form per section kind: the fields a caseworker fills in, their French
//! labels, how each is checked, and how the form becomes the section's JSON
//! object and back. Keys the form does not know are kept as they were.

use serde_json::{Map, Value};

use crate::types::Section;

/// What a field holds.
#[derive(Clone, Copy, Debug)]
pub(super) enum Kind {
    /// One line of text, at most 200 characters.
    Text,
    /// Several lines, kept as a JSON array of lines.
    Lines,
    /// A whole number within bounds.
    Number { min: i64, max: i64 },
    /// An amount in euros (`450` or `450,50`).
    Euros,
    /// Oui or non (or not said).
    YesNo,
    /// One of a closed list: (value kept, French label).
    Choice(&'static [(&'static str, &'static str)]),
    /// A date (`12/03/2027`), kept as `2027-03-12`.
    Date,
}

/// One field of a section's form.
#[derive(Clone, Copy, Debug)]
pub(super) struct Field {
    /// The JSON key.
    pub key: &'static str,
    /// The French label.
    pub label: &'static str,
    /// What it holds.
    pub kind: Kind,
}

const fn f(key: &'static str, label: &'static str, kind: Kind) -> Field {
    Field { key, label, kind }
}

const HOUSING: &[(&str, &str)] = &[
    (
        "logement autonome",
        "Logement autonome (locataire ou propriétaire)",
    ),
    ("logement social", "Logement social"),
    ("hébergée chez un tiers", "Hébergée chez un tiers"),
    ("hébergé chez un tiers", "Hébergé chez un tiers"),
    ("hébergement d'urgence", "Hébergement d'urgence"),
    ("foyer ou résidence sociale", "Foyer ou résidence sociale"),
    ("sans domicile", "Sans domicile"),
];
const FAMILY: &[(&str, &str)] = &[
    ("seul", "Personne seule"),
    ("couple", "En couple"),
    ("séparé", "Séparé ou divorcé"),
    ("veuf", "Veuf ou veuve"),
];
const WORK: &[(&str, &str)] = &[
    ("emploi", "En emploi"),
    ("recherche", "En recherche d'emploi"),
    ("formation", "En formation"),
    ("sans activité", "Sans activité"),
    ("retraite", "À la retraite"),
];
const COVER: &[(&str, &str)] = &[
    ("puma", "Assurance maladie (PUMa)"),
    ("css", "Complémentaire santé solidaire"),
    ("ame", "Aide médicale de l'État"),
    ("aucune", "Aucune couverture"),
];
const INCAPACITY: &[(&str, &str)] = &[
    ("moins de 50 %", "Moins de 50 %"),
    ("50 à 79 %", "De 50 à 79 %"),
    ("80 % et plus", "80 % et plus"),
];
const MEASURE: &[(&str, &str)] = &[
    ("aucune", "Aucune mesure"),
    (
        "information préoccupante",
        "Information préoccupante en cours",
    ),
    ("AED", "Aide éducative à domicile (AED)"),
    ("AEMO", "Action éducative en milieu ouvert (AEMO)"),
    ("placement", "Placement"),
];

/// The fields of a section's form.
pub(super) fn fields(section: Section) -> &'static [Field] {
    use Kind::*;
    match section {
        Section::Identity => {
            const F: &[Field] = &[
                f("adresse", "Adresse", Text),
                f(
                    "code_commune",
                    "Code INSEE de la commune de résidence",
                    Text,
                ),
                f("telephone", "Téléphone", Text),
                f("langue", "Langue parlée", Text),
                f("nationalite", "Nationalité", Text),
            ];
            F
        }
        Section::Household => {
            const F: &[Field] = &[
                f("situation_familiale", "Situation familiale", Choice(FAMILY)),
                f("adultes", "Adultes au foyer", Number { min: 0, max: 20 }),
                f("enfants", "Enfants au foyer", Number { min: 0, max: 20 }),
                f("parent_isole", "Parent isolé", YesNo),
            ];
            F
        }
        Section::Housing => {
            const F: &[Field] = &[
                f("situation", "Situation de logement", Choice(HOUSING)),
                f("loyer", "Loyer ou participation mensuelle (€)", Euros),
                f(
                    "demande_logement_social",
                    "Demande de logement social déposée",
                    YesNo,
                ),
                f("notes", "Précisions", Lines),
            ];
            F
        }
        Section::Resources => {
            const F: &[Field] = &[
                f("rsa", "Revenu de solidarité active (RSA)", YesNo),
                f("apl", "Aide personnalisée au logement (APL)", YesNo),
                f("aah", "Allocation aux adultes handicapés (AAH)", YesNo),
                f("prime_activite", "Prime d'activité", YesNo),
                f(
                    "montant_mensuel",
                    "Ressources mensuelles du foyer (€)",
                    Euros,
                ),
            ];
            F
        }
        Section::Employment => {
            const F: &[Field] = &[
                f("emploi", "Situation professionnelle", Choice(WORK)),
                f("inscrit_france_travail", "Inscrit à France Travail", YesNo),
                f("suivi", "Accompagnement en cours", Text),
            ];
            F
        }
        Section::Health => {
            const F: &[Field] = &[
                f("couverture", "Couverture maladie", Choice(COVER)),
                f("medecin_traitant", "Médecin traitant déclaré", YesNo),
                f("notes", "Précisions", Lines),
            ];
            F
        }
        Section::Disability => {
            const F: &[Field] = &[
                f("taux_incapacite", "Taux d'incapacité", Choice(INCAPACITY)),
                f("rqth", "Reconnaissance de travailleur handicapé", YesNo),
                f("pch", "Prestation de compensation du handicap", YesNo),
            ];
            F
        }
        Section::Autonomy => {
            const F: &[Field] = &[
                f(
                    "gir",
                    "Groupe iso-ressources (GIR)",
                    Number { min: 1, max: 6 },
                ),
                f("apa", "Allocation personnalisée d'autonomie", YesNo),
                f("aidant", "Aidant principal", Text),
            ];
            F
        }
        Section::ChildProtection => {
            const F: &[Field] = &[
                f("mesure", "Mesure en cours", Choice(MEASURE)),
                f(
                    "enfants_concernes",
                    "Enfants concernés",
                    Number { min: 0, max: 20 },
                ),
            ];
            F
        }
        Section::SupportPlan => {
            const F: &[Field] = &[
                f("objectifs", "Objectifs (un par ligne)", Lines),
                f("actions", "Actions (une par ligne)", Lines),
                f("prochain_rendez_vous", "Prochain rendez-vous", Date),
            ];
            F
        }
    }
}

/// The French name of a section, capitalised (the receipt's words).
pub(super) fn section_fr(section: Section) -> String {
    let name = crate::consent::receipt::section_fr(section);
    let mut chars = name.chars();
    chars
        .next()
        .map(|first| first.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

/// A field's value as the form shows it.
pub(super) fn shown(field: &Field, value: Option<&Value>) -> String {
    let Some(value) = value else {
        return String::new();
    };
    match (field.kind, value) {
        (Kind::Lines, Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
            .collect::<Vec<_>>()
            .join("\n"),
        (Kind::YesNo, Value::Bool(b)) => if *b { "oui" } else { "non" }.into(),
        (Kind::Euros, Value::Number(n)) => n.to_string().replace('.', ","),
        (Kind::Date, Value::String(s)) => s
            .parse::<crate::types::Date>()
            .map_or_else(|_| s.clone(), |d| french_date(&d)),
        (_, Value::String(s)) => s.clone(),
        (_, other) => other.to_string(),
    }
}

/// `2027-03-12` as `12/03/2027`.
pub(super) fn french_date(date: &crate::types::Date) -> String {
    crate::types::french_date(&date.to_string())
}

/// A value of a section as the unified view shows it.
pub(super) fn value_fr(value: &Value) -> String {
    match value {
        Value::Bool(true) => "oui".into(),
        Value::Bool(false) => "non".into(),
        Value::String(s) => s
            .parse::<crate::types::Date>()
            .map_or_else(|_| s.clone(), |d| french_date(&d)),
        Value::Number(n) => n.to_string().replace('.', ","),
        Value::Array(items) => items.iter().map(value_fr).collect::<Vec<_>>().join(" ; "),
        Value::Null => "—".into(),
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| format!("{k} : {}", value_fr(v)))
            .collect::<Vec<_>>()
            .join(" ; "),
    }
}

/// The label of a key in a section (the key itself when the form does not know it).
pub(super) fn label_of(section: Section, key: &str) -> String {
    fields(section)
        .iter()
        .find(|f| f.key == key)
        .map_or_else(|| key.replace('_', " "), |f| f.label.to_owned())
}

/// A section's JSON as a page shows it: (label, value) in the form's
/// order, then the keys the form does not know; a body that is not an
/// object, whole.
pub(super) fn shown_fields(section: Section, json: &str) -> Vec<(String, String)> {
    let Ok(Value::Object(map)) = serde_json::from_str::<Value>(json) else {
        return vec![("contenu".into(), json.to_owned())];
    };
    let order = |k: &str| {
        fields(section)
            .iter()
            .position(|f| f.key == k)
            .unwrap_or(usize::MAX)
    };
    let mut keys: Vec<&String> = map.keys().collect();
    keys.sort_by_key(|k| order(k));
    keys.into_iter()
        .map(|k| (label_of(section, k), value_fr(&map[k])))
        .collect()
}

/// The section's JSON from a submitted form and the section as it was:
/// each known field checked (an error in French per field), an empty
/// field removed, every other key kept.
pub(super) fn merge(
    section: Section,
    before: Option<&Map<String, Value>>,
    form: &std::collections::HashMap<String, String>,
) -> Result<Map<String, Value>, Vec<(&'static str, String)>> {
    let mut out = before.cloned().unwrap_or_default();
    let mut errors = Vec::new();
    for field in fields(section) {
        let raw = form.get(field.key).map(|v| v.trim()).unwrap_or("");
        if raw.is_empty() {
            out.remove(field.key);
            continue;
        }
        match parse(field, raw, before.and_then(|b| b.get(field.key))) {
            Ok(v) => {
                out.insert(field.key.to_owned(), v);
            }
            Err(e) => errors.push((field.key, e)),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// One field's value from what was typed.
fn parse(field: &Field, raw: &str, before: Option<&Value>) -> Result<Value, String> {
    if raw.chars().count() > 2000
        || raw
            .chars()
            .any(|c| c.is_control() && c != '\n' && c != '\r')
    {
        return Err("Ce texte est trop long ou contient des caractères refusés.".into());
    }
    match field.kind {
        Kind::Text => {
            if raw.chars().count() > 200 {
                Err("Ce texte dépasse 200 caractères.".into())
            } else {
                Ok(Value::String(raw.to_owned()))
            }
        }
        Kind::Lines => Ok(Value::Array(
            raw.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(|l| Value::String(l.to_owned()))
                .collect(),
        )),
        Kind::Number { min, max } => match raw.parse::<i64>() {
            Ok(n) if (min..=max).contains(&n) => Ok(Value::from(n)),
            _ => Err(format!("Indiquez un nombre entier de {min} à {max}.")),
        },
        Kind::Euros => {
            let amount = raw
                .replace(['€', ' ', '\u{a0}'], "")
                .replace(',', ".")
                .parse::<f64>()
                .ok()
                .filter(|n| n.is_finite() && (0.0..=1_000_000.0).contains(n));
            let refused = || "Indiquez un montant en euros, par exemple 450 ou 450,50.".to_owned();
            let cents = (amount.ok_or_else(refused)? * 100.0).round();
            if cents % 100.0 == 0.0 {
                Ok(Value::from((cents / 100.0) as i64))
            } else {
                serde_json::Number::from_f64(cents / 100.0)
                    .map(Value::Number)
                    .ok_or_else(refused)
            }
        }
        Kind::YesNo => match raw {
            "oui" => Ok(Value::Bool(true)),
            "non" => Ok(Value::Bool(false)),
            _ => Err("Choisissez oui ou non.".into()),
        },
        Kind::Choice(options) => {
            if options.iter().any(|(v, _)| *v == raw) || before.and_then(Value::as_str) == Some(raw)
            {
                Ok(Value::String(raw.to_owned()))
            } else {
                Err("Choisissez une des valeurs proposées.".into())
            }
        }
        Kind::Date => super::parse_date(raw)
            .map(|d| Value::String(d.to_string()))
            .ok_or_else(|| "Indiquez une date réelle, par exemple 12/03/2027.".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(pairs: &[(&str, &str)]) -> std::collections::HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_form_becomes_typed_json_and_keeps_what_it_does_not_know() {
        let before: Map<String, Value> = serde_json::from_str(
            r#"{"situation":"hébergée chez un tiers","depuis":"2026-09","loyer":450}"#,
        )
        .expect("json");
        let out = merge(
            Section::Housing,
            Some(&before),
            &form(&[
                ("situation", "logement social"),
                ("loyer", "412,50"),
                ("demande_logement_social", "oui"),
                ("notes", "  relogement prévu\n\n bail signé "),
            ]),
        )
        .expect("valid");
        assert_eq!(
            Value::Object(out),
            serde_json::json!({
                "situation": "logement social",
                "depuis": "2026-09",
                "loyer": 412.5,
                "demande_logement_social": true,
                "notes": ["relogement prévu", "bail signé"],
            })
        );
    }

    #[test]
    fn each_bad_field_gets_its_own_french_error_and_nothing_is_kept() {
        let errors = merge(
            Section::Household,
            None,
            &form(&[
                ("adultes", "deux"),
                ("enfants", "40"),
                ("parent_isole", "peut-être"),
            ]),
        )
        .expect_err("refused");
        let keys: Vec<_> = errors.iter().map(|(k, _)| *k).collect();
        assert_eq!(keys, ["adultes", "enfants", "parent_isole"]);
        assert!(errors[1].1.contains("de 0 à 20"));
        let bad_choice = merge(Section::Housing, None, &form(&[("situation", "château")]));
        assert!(bad_choice.is_err());
        let bad_date = merge(
            Section::SupportPlan,
            None,
            &form(&[("prochain_rendez_vous", "31/02/2027")]),
        );
        assert!(bad_date.is_err());
    }

    #[test]
    fn a_kept_value_outside_the_list_stays_choosable() {
        let before: Map<String, Value> =
            serde_json::from_str(r#"{"situation":"hébergé"}"#).expect("json");
        assert!(
            merge(
                Section::Housing,
                Some(&before),
                &form(&[("situation", "hébergé")])
            )
            .is_ok()
        );
        assert_eq!(
            shown(&fields(Section::Housing)[0], before.get("situation")),
            "hébergé"
        );
    }
}
