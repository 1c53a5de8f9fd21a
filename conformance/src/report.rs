//! One line per module, named as the certification suite names it, and a summary.

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Pass,
    /// Passed, with something worth a look (the suite's WARNING).
    Warn(String),
    Fail(String),
    Skip(String),
}

impl Outcome {
    pub fn fail(why: impl Into<String>) -> Self {
        Outcome::Fail(why.into())
    }
}

#[derive(Debug, Default)]
pub struct Report {
    results: Vec<(String, Outcome)>,
}

impl Report {
    pub fn record(&mut self, name: &str, outcome: Outcome) {
        match &outcome {
            Outcome::Pass => println!("PASS  {name}"),
            Outcome::Warn(why) => println!("PASS  {name} (warning: {why})"),
            Outcome::Fail(why) => println!("FAIL  {name}: {why}"),
            Outcome::Skip(why) => println!("SKIP  {name}: {why}"),
        }
        self.results.push((name.to_owned(), outcome));
    }

    pub fn failed(&self) -> usize {
        self.results
            .iter()
            .filter(|(_, o)| matches!(o, Outcome::Fail(_)))
            .count()
    }

    pub fn print_summary(&self) {
        let count = |f: fn(&Outcome) -> bool| self.results.iter().filter(|(_, o)| f(o)).count();
        println!(
            "conformance summary: {} PASS, {} FAIL, {} SKIP",
            count(|o| matches!(o, Outcome::Pass | Outcome::Warn(_))),
            self.failed(),
            count(|o| matches!(o, Outcome::Skip(_))),
        );
    }
}
