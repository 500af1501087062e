"""The demo universe: real tickers with names and sectors.

Shared by `starter.py seed-demo` and the local stand-ins in deallens/sim, so that the
simulated providers know exactly the companies that the demo database tracks (and anything
else is an unknown symbol, as it would be on the real provider).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal


@dataclass(frozen=True, slots=True)
class DemoCompany:
    symbol: str
    name: str
    sector: str
    industry: str
    exchange: str
    # A plausible starting price for the simulated random walk (USD).
    base_price: Decimal


DEMO_COMPANIES: tuple[DemoCompany, ...] = (
    DemoCompany("AAPL", "Apple Inc", "TECHNOLOGY", "Consumer Electronics", "NASDAQ", Decimal("228.50")),
    DemoCompany("MSFT", "Microsoft Corporation", "TECHNOLOGY", "Software - Infrastructure", "NASDAQ", Decimal("415.20")),
    DemoCompany("GOOGL", "Alphabet Inc Class A", "COMMUNICATION SERVICES", "Internet Content & Information", "NASDAQ", Decimal("172.10")),
    DemoCompany("AMZN", "Amazon.com Inc", "CONSUMER CYCLICAL", "Internet Retail", "NASDAQ", Decimal("186.40")),
    DemoCompany("NVDA", "NVIDIA Corporation", "TECHNOLOGY", "Semiconductors", "NASDAQ", Decimal("121.30")),
    DemoCompany("META", "Meta Platforms Inc", "COMMUNICATION SERVICES", "Internet Content & Information", "NASDAQ", Decimal("563.00")),
    DemoCompany("TSLA", "Tesla Inc", "CONSUMER CYCLICAL", "Auto Manufacturers", "NASDAQ", Decimal("248.90")),
    DemoCompany("JPM", "JPMorgan Chase & Co", "FINANCIAL SERVICES", "Banks - Diversified", "NYSE", Decimal("212.40")),
    DemoCompany("GS", "Goldman Sachs Group Inc", "FINANCIAL SERVICES", "Capital Markets", "NYSE", Decimal("505.70")),
    DemoCompany("MS", "Morgan Stanley", "FINANCIAL SERVICES", "Capital Markets", "NYSE", Decimal("104.80")),
    DemoCompany("IBM", "International Business Machines", "TECHNOLOGY", "Information Technology Services", "NYSE", Decimal("214.60")),
    DemoCompany("ORCL", "Oracle Corporation", "TECHNOLOGY", "Software - Infrastructure", "NYSE", Decimal("168.30")),
    DemoCompany("CSCO", "Cisco Systems Inc", "TECHNOLOGY", "Communication Equipment", "NASDAQ", Decimal("53.20")),
    DemoCompany("AVGO", "Broadcom Inc", "TECHNOLOGY", "Semiconductors", "NASDAQ", Decimal("165.90")),
    DemoCompany("PFE", "Pfizer Inc", "HEALTHCARE", "Drug Manufacturers - General", "NYSE", Decimal("28.90")),
    DemoCompany("JNJ", "Johnson & Johnson", "HEALTHCARE", "Drug Manufacturers - General", "NYSE", Decimal("161.40")),
    DemoCompany("XOM", "Exxon Mobil Corporation", "ENERGY", "Oil & Gas Integrated", "NYSE", Decimal("117.60")),
    DemoCompany("CVX", "Chevron Corporation", "ENERGY", "Oil & Gas Integrated", "NYSE", Decimal("151.20")),
    DemoCompany("DIS", "Walt Disney Co", "COMMUNICATION SERVICES", "Entertainment", "NYSE", Decimal("96.70")),
    DemoCompany("NFLX", "Netflix Inc", "COMMUNICATION SERVICES", "Entertainment", "NASDAQ", Decimal("705.30")),
    DemoCompany("KO", "Coca-Cola Co", "CONSUMER DEFENSIVE", "Beverages - Non-Alcoholic", "NYSE", Decimal("70.10")),
    DemoCompany("WMT", "Walmart Inc", "CONSUMER DEFENSIVE", "Discount Stores", "NYSE", Decimal("80.40")),
)

DEMO_SYMBOLS: frozenset[str] = frozenset(c.symbol for c in DEMO_COMPANIES)


def demo_company(symbol: str) -> DemoCompany | None:
    """The demo company for a symbol (case-insensitive), or None when it is not in the universe."""
    symbol = symbol.strip().upper()
    for company in DEMO_COMPANIES:
        if company.symbol == symbol:
            return company
    return None
