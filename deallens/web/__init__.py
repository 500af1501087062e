"""The one HTTP surface this service owns: the unsubscribe page behind List-Unsubscribe."""
